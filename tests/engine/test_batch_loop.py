"""`BatchLoop`: the batched front-end on its real-time thread, sessions joining and leaving."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pytest

from kame_cli.bus import EventBus
from kame_cli.clock import SessionClock
from kame_cli.engine.batch import SlotsFull
from kame_cli.engine.batch_loop import BatchLoop, BatchSession
from kame_cli.engine.config import FrontendConfig
from kame_cli.engine.loader import Frontend, load_frontend
from kame_cli.events import FrontendText, OracleAppend, OracleCommand, OracleFed, OracleReset, StepTiming
from tests.engine.streaming import voice_like_frames
from tests.engine.test_batch import Session, alone

STEPS = 12


@pytest.fixture(scope="module")
def frontend() -> Frontend:
    return load_frontend(FrontendConfig(model="random:tiny", device="cpu"))


def _wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


class _Collected:
    def __init__(self) -> None:
        self.bus = EventBus()
        self.sub = self.bus.subscribe("test", maxsize=0)
        self.pcm: list[tuple[int, np.ndarray]] = []

    def on_output(self, index: int, pcm: np.ndarray) -> None:
        self.pcm.append((index, pcm))


def _open(
    loop: BatchLoop, seed: int, frames: list[np.ndarray], oracle: tuple[OracleCommand, ...] = ()
) -> tuple[BatchSession, _Collected]:
    got = _Collected()
    session = loop.open_session(
        got.bus, SessionClock(), got.on_output, seed=seed, frames=tuple(frames), oracle=oracle
    )
    return session, got


def test_sessions_in_the_real_time_batch_equal_each_alone(frontend: Frontend) -> None:
    inputs = [voice_like_frames(STEPS, seed=30 + i) for i in range(2)]
    loop = BatchLoop(frontend, 3, jitter_frames=STEPS)
    loop.start()
    try:
        first, got_first = _open(loop, 5, inputs[0], (OracleReset(1), OracleAppend(1, (21, 22))))
        second, got_second = _open(loop, 6, inputs[1])
        silent, _ = _open(loop, 7, [])  # the third slot: a client that never sends
        with pytest.raises(SlotsFull, match="all 3 front-end slots are taken"):
            loop.open_session(EventBus(), SessionClock(), lambda i, p: None)
        _wait_for(lambda: first.steps >= STEPS and second.steps >= STEPS and silent.steps >= 3)
        first.leave()
        _wait_for(first.ended.is_set)
        assert loop.taken == 2
    finally:
        assert loop.stop(timeout=10)
    assert loop.error is None
    # The silent client stepped on silence every tick, and held no one back (below).
    counts = silent.summary()
    assert counts["client_frames"] == counts["dropped_frames"] == 0
    assert counts["late_frames"] == counts["steps"] >= 3
    oracle = {0: [OracleReset(1), OracleAppend(1, (21, 22))]}
    for session, got, want in (
        (first, got_first, alone(frontend, Session(5, inputs[0], oracle))),
        (second, got_second, alone(frontend, Session(6, inputs[1]))),
    ):
        assert session.late_frames == session.steps - STEPS  # late only once its frames ran out
        assert [index for index, _ in got.pcm[:STEPS]] == list(range(STEPS))
        np.testing.assert_allclose(
            np.stack([p for _, p in got.pcm[:STEPS]]), np.stack([o.pcm for o in want]), atol=1e-5
        )
        events = got.sub.drain()
        pieces = [e.text for e in events if isinstance(e, FrontendText) and e.step < STEPS]
        expected = [frontend.text_piece(o.text_token) for o in want if o.text_token is not None]
        assert pieces == [p for p in expected if p]
        timings = [e for e in events if isinstance(e, StepTiming)]
        assert len(timings) == session.steps
        # The batch's step and stages; the lag is this session's own backlog (its frames queued at join).
        assert timings[0].lag_ms == pytest.approx((STEPS - 1) * 80.0)
        assert timings[STEPS - 1].lag_ms == 0.0
        assert all(0 < t.lm_ms <= t.total_ms and t.encode_ms > 0 for t in timings)
        fed = [(e.step, e.token_id) for e in events if isinstance(e, OracleFed)]
        want_fed = [(o.step, o.oracle_token) for o in want if o.oracle_token != frontend.text_padding_id]
        assert fed == want_fed
    assert [token for _, token in fed] == [] and want_fed == []  # the second session had no oracle


def test_no_session_joins_a_stopped_loop(frontend: Frontend) -> None:
    loop = BatchLoop(frontend, 2, warmup_steps=2)
    loop.start()
    assert loop.stop(timeout=10)
    with pytest.raises(RuntimeError, match="has stopped: no new session can join"):
        loop.open_session(EventBus(), SessionClock(), lambda i, p: None)
