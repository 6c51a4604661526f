"""The batched front-end: each session's tokens at batch 4 are exactly its tokens alone.

Sessions differ in input, seed and oracle schedule; they join, leave and miss frames at different
steps. The reference for each is the same session alone at batch 1, and at batch 1 the batched
front-end equals the single-session `FrontendLoop` (what `kame talk` runs) with the same seed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from kame_cli.engine.batch import BatchedFrontend, SlotOutput, SlotsFull
from kame_cli.engine.config import FrontendConfig
from kame_cli.engine.loader import Frontend, load_frontend
from kame_cli.events import OracleAppend, OracleClear, OracleCommand, OracleReset
from tests.engine.streaming import stream, voice_like_frames

STEPS = 24


@dataclass
class Session:
    """One conversation: its frames (None: the frame is late), seed, oracle commands by its own step."""

    seed: int
    frames: Sequence[np.ndarray | None]
    oracle: Mapping[int, Sequence[OracleCommand]] = field(default_factory=dict)
    join_at: int = 0
    """The batch step at which it joins."""


def run_batch(frontend: Frontend, slots: int, sessions: Sequence[Session]) -> list[list[SlotOutput]]:
    """Step `sessions` together in one batch; each session's outputs in its own step order."""
    outputs: list[list[SlotOutput]] = [[] for _ in sessions]
    slot_of: dict[int, int] = {}
    with BatchedFrontend(frontend, slots) as batch:
        step = 0
        while any(len(outputs[i]) < len(s.frames) for i, s in enumerate(sessions)):
            for index, session in enumerate(sessions):
                if session.join_at == step:
                    slot_of[index] = batch.join(seed=session.seed)
            frames: dict[int, np.ndarray | None] = {}
            for index, slot in list(slot_of.items()):
                own = len(outputs[index])
                if own == len(sessions[index].frames):
                    batch.leave(slot)
                    del slot_of[index]
                    continue
                for command in sessions[index].oracle.get(own, ()):
                    batch.send_oracle(slot, command)
                frames[slot] = sessions[index].frames[own]
            by_slot = {slot: index for index, slot in slot_of.items()}
            for slot, out in batch.step(frames).items():
                outputs[by_slot[slot]].append(out)
            step += 1
    return outputs


def alone(frontend: Frontend, session: Session) -> list[SlotOutput]:
    return run_batch(frontend, 1, [Session(session.seed, session.frames, session.oracle)])[0]


def tokens(outputs: Sequence[SlotOutput]) -> list[tuple[int, int | None, tuple[int, ...] | None]]:
    return [(out.oracle_token, out.text_token, out.audio_tokens) for out in outputs]


def assert_same_session(got: Sequence[SlotOutput], want: Sequence[SlotOutput]) -> None:
    assert tokens(got) == tokens(want)
    # Audio is float: the batch's matrix products may round differently, never by an audible amount.
    np.testing.assert_allclose(np.stack([o.pcm for o in got]), np.stack([o.pcm for o in want]), atol=1e-5)


def four_sessions() -> list[Session]:
    """Four conversations with different inputs, seeds and oracle schedules."""
    frames = [voice_like_frames(STEPS, seed=10 + i) for i in range(4)]
    return [
        Session(
            1, frames[0], {2: [OracleReset(1), OracleAppend(1, (11, 12, 13))], 6: [OracleAppend(1, (14,))]}
        ),
        Session(2, frames[1]),  # no oracle at all: padding every step
        Session(3, frames[2], {0: [OracleReset(4)], 9: [OracleReset(5), OracleAppend(5, (40, 41, 42, 43))]}),
        Session(4, frames[3], {4: [OracleReset(2), OracleAppend(2, (7, 8, 9))], 5: [OracleClear(2)]}),
    ]


@pytest.fixture(scope="module", params=["random:tiny", "kame-format checkpoint"])
def frontend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Frontend:
    if request.param == "random:tiny":
        return load_frontend(FrontendConfig(model="random:tiny", device="cpu"))
    from tests.support.checkpoints import write_tiny_checkpoint

    directory: Path = write_tiny_checkpoint(tmp_path_factory.mktemp("batch-kame"), kame_format=True, seed=7)
    return load_frontend(FrontendConfig(model=str(directory), device="cpu"))


def test_four_sessions_at_batch_four_give_their_tokens_alone(frontend: Frontend) -> None:
    sessions = four_sessions()
    together = run_batch(frontend, 4, sessions)
    for session, got in zip(sessions, together, strict=True):
        assert len(got) == STEPS
        assert_same_session(got, alone(frontend, session))
    # The sessions are not all alike (else equality would prove nothing about rows).
    assert len({tuple(tokens(outputs)) for outputs in together}) == 4
    # The oracle schedule reached the rows: session 0 was fed its start token and answer in order.
    assert [out.oracle_token for out in together[0][2:7]] == [frontend.text_start_id, 11, 12, 13, 14]


def test_a_batch_of_one_equals_the_single_session_loop(frontend: Frontend) -> None:
    session = four_sessions()[0]
    batched = alone(frontend, session)
    loop = stream(
        frontend, [f for f in session.frames if f is not None], seed=session.seed, at_step=session.oracle
    )
    assert [out.text_token for out in batched] == loop.loop.text_tokens
    assert [out.oracle_token for out in batched] == loop.loop.fed_oracle_tokens


def test_a_session_joining_mid_way_changes_no_other(frontend: Frontend) -> None:
    first, second, third, _ = four_sessions()
    without = run_batch(frontend, 4, [first, second])
    late_joiner = Session(third.seed, third.frames[:12], third.oracle, join_at=9)
    with_join = run_batch(frontend, 4, [first, second, late_joiner])
    assert tokens(with_join[0]) == tokens(without[0])
    assert tokens(with_join[1]) == tokens(without[1])
    assert_same_session(with_join[2], alone(frontend, late_joiner))


def test_an_oracle_reset_in_one_row_changes_nothing_in_another(frontend: Frontend) -> None:
    first, second, _, _ = four_sessions()
    reset_first = Session(
        first.seed, first.frames, {**first.oracle, 10: [OracleReset(9), OracleAppend(9, (3,) * 8)]}
    )
    before = run_batch(frontend, 2, [first, second])
    after = run_batch(frontend, 2, [reset_first, second])
    assert tokens(after[0]) != tokens(before[0])  # the reset took effect in its own row...
    assert tokens(after[1]) == tokens(before[1])  # ...and nowhere else


def test_a_slot_freed_and_taken_again_starts_fresh(frontend: Frontend) -> None:
    first, second, third, _ = four_sessions()
    short = Session(first.seed, first.frames[:8], first.oracle)
    # `third` joins at step 10, after `short` left slot 0 at step 8: it gets that used row.
    reuse = Session(third.seed, third.frames[:10], third.oracle, join_at=10)
    outputs = run_batch(frontend, 2, [short, second, reuse])
    assert_same_session(outputs[2], alone(frontend, reuse))
    assert outputs[2][0].slot == 0


def test_a_late_frame_steps_on_silence_and_holds_no_one_back() -> None:
    frontend = load_frontend(FrontendConfig(model="random:tiny", device="cpu"))
    first, second, _, _ = four_sessions()
    gaps = [None if step in (3, 4, 11) else frame for step, frame in enumerate(first.frames)]
    gappy = Session(first.seed, gaps, first.oracle)
    outputs = run_batch(frontend, 2, [gappy, second])
    assert [out.step for out in outputs[0] if out.late] == [3, 4, 11]
    assert not any(out.late for out in outputs[1])
    # A late frame is the same as a silent one, and the other session never noticed.
    silent = [np.zeros_like(first.frames[0]) if frame is None else frame for frame in gaps]
    assert_same_session(outputs[0], alone(frontend, Session(first.seed, silent, first.oracle)))
    assert tokens(outputs[1]) == tokens(alone(frontend, second))


def test_slots_are_bounded_and_named() -> None:
    frontend = load_frontend(FrontendConfig(model="random:tiny", device="cpu"))
    with BatchedFrontend(frontend, 2, warmup_steps=2) as batch:
        assert [batch.join(seed=1), batch.join(seed=2)] == [0, 1]
        with pytest.raises(SlotsFull, match="all 2 front-end slots are taken"):
            batch.join()
        batch.leave(0)
        assert batch.free_slots == [0]
        with pytest.raises(ValueError, match=r"slots with no session: \[0\]"):
            batch.step({0: np.zeros(1920, dtype=np.float32)})
        out = batch.step({})
        assert list(out) == [1] and out[1].late and batch.late_frames(1) == 1
    with pytest.raises(RuntimeError, match="not open"):
        batch.join()
