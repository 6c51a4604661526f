"""The real-time loop's life cycle, events and failure path, on a tiny checkpoint."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from kame_cli.bus import EventBus
from kame_cli.clock import SessionClock
from kame_cli.engine.config import FrontendConfig
from kame_cli.engine.loader import Frontend, load_frontend
from kame_cli.engine.loop import FrontendLoop
from kame_cli.events import BackendStatus, DeadlineMiss, FrontendText, StepTiming
from tests.engine.streaming import stream, voice_like_frames


@pytest.fixture(scope="module")
def frontend(kame_checkpoint: Path) -> Frontend:
    return load_frontend(FrontendConfig(model=str(kame_checkpoint), device="cpu"))


def test_warm_up_happens_in_start_and_leaves_no_trace(frontend: Frontend) -> None:
    bus = EventBus()
    sub = bus.subscribe("test", maxsize=0)
    loop = FrontendLoop(frontend, bus, SessionClock(), on_output=lambda step, pcm: None)
    loop.start()
    try:
        assert loop.steps == 0 and loop.fed_oracle_tokens == [] and loop.text_tokens == []
        events = sub.drain()
        assert [type(e) for e in events] == [BackendStatus]
        assert events[0].component == "frontend" and events[0].state == "ok"
    finally:
        assert loop.stop(timeout=5)


def test_text_events_spell_the_sampled_tokens(frontend: Frontend) -> None:
    result = stream(frontend, voice_like_frames(20))

    tokens = result.loop.text_tokens
    assert tokens[0] is None and all(t is not None for t in tokens[1:])
    pieces = [frontend.text_piece(t) for t in tokens if t is not None]
    assert "".join(e.text for e in result.of(FrontendText)) == "".join(p for p in pieces if p)
    for timing in result.of(StepTiming):
        assert min(timing.encode_ms, timing.lm_ms, timing.decode_ms) >= 0
        assert timing.encode_ms + timing.lm_ms + timing.decode_ms <= timing.total_ms + 0.5


def test_steps_over_budget_publish_deadline_misses(frontend: Frontend) -> None:
    result = stream(frontend, voice_like_frames(5), budget_ms=0.001)

    misses = result.of(DeadlineMiss)
    assert [m.step for m in misses] == list(range(5))
    assert all(m.budget_ms == 0.001 and m.total_ms > 0.001 for m in misses)
    assert result.loop.deadline_misses == 5


def test_stop_ends_the_thread_without_working_through_the_backlog(frontend: Frontend) -> None:
    loop = FrontendLoop(frontend, EventBus(), SessionClock(), on_output=lambda step, pcm: None)
    loop.start()
    for frame in voice_like_frames(100):
        loop.submit_frame(frame)

    assert loop.stop(timeout=5)
    assert loop.steps < 100
    # Every frame is stepped or counted: those still queued at the stop are dropped frames.
    assert loop.steps + loop.dropped_frames == 100 and loop.lag_dropped_frames == 0
    assert not any(t.name == "kame-frontend" for t in threading.enumerate())


def test_submit_frame_rejects_a_wrong_size_and_copies_the_buffer(frontend: Frontend) -> None:
    loop = FrontendLoop(frontend, EventBus(), SessionClock(), on_output=lambda step, pcm: None)
    with pytest.raises(ValueError, match="1920 samples, got 960"):
        loop.submit_frame(np.zeros(960, dtype=np.float32))
    buffer = np.ones(1920, dtype=np.float64)
    loop.submit_frame(buffer)
    buffer[:] = 5.0  # a sound card reuses its buffer: the queued frame must not change
    assert loop.backlog == 1
    queued = loop._frames.get_nowait()
    assert queued is not None and queued.dtype == np.float32 and (queued == 1.0).all()


def test_a_failing_step_ends_the_loop_and_reports_it(frontend: Frontend) -> None:
    def broken_sink(step: int, pcm: np.ndarray) -> None:
        raise OSError("sound card vanished")

    bus = EventBus()
    sub = bus.subscribe("test", maxsize=0)
    loop = FrontendLoop(frontend, bus, SessionClock(), on_output=broken_sink)
    loop.start()
    loop.submit_frame(voice_like_frames(1)[0])

    assert loop.join(timeout=10)
    assert isinstance(loop.error, OSError)
    statuses = [e for e in sub.drain() if isinstance(e, BackendStatus)]
    assert statuses[-1].state == "error" and "sound card vanished" in statuses[-1].message
    # A microphone still feeding the dead loop: nothing piles up.
    for frame in voice_like_frames(3):
        loop.submit_frame(frame)
    assert loop.backlog == 0 and loop.dropped_frames == 3


def test_start_twice_is_refused(frontend: Frontend) -> None:
    loop = FrontendLoop(frontend, EventBus(), SessionClock(), on_output=lambda step, pcm: None)
    loop.start()
    try:
        with pytest.raises(RuntimeError, match="twice"):
            loop.start()
    finally:
        assert loop.stop(timeout=5)
