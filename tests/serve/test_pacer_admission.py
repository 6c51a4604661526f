"""The two small state holders of `kame serve`: the pacer (one frame per tick, silence when none came,
a bounded jitter buffer) and the admission queue (one slot, a bounded line, in order)."""

from __future__ import annotations

import asyncio
import threading

import numpy as np

from kame_cli.clock import FRAME_SAMPLES
from kame_cli.serve.admission import Admission
from kame_cli.serve.host import Pacer
from tests.session.conftest import wait_until


def _frame(value: float) -> np.ndarray:
    return np.full(FRAME_SAMPLES, value, np.float32)


def test_a_burst_beyond_the_jitter_buffer_drops_the_oldest_frames() -> None:
    submitted: list[float] = []
    pacer = Pacer(lambda frame: submitted.append(float(frame[0])), jitter_frames=4)
    for i in range(10):
        pacer.offer(_frame(i + 1))
    assert pacer.dropped_frames == 6 and pacer.client_frames == 10
    pacer.start()
    wait_until(lambda: len(submitted) >= 6, 10)
    pacer.stop()
    # The newest four, in order, then silence: each silent tick is a late frame.
    assert submitted[:4] == [7.0, 8.0, 9.0, 10.0]
    assert set(submitted[4:]) == {0.0} and pacer.late_frames == len(submitted) - 4


def test_the_pacer_steps_on_silence_when_the_client_sends_nothing() -> None:
    lock = threading.Lock()
    submitted: list[np.ndarray] = []

    def submit(frame: np.ndarray) -> None:
        with lock:
            submitted.append(frame)

    pacer = Pacer(submit, jitter_frames=4)
    pacer.start()
    wait_until(lambda: len(submitted) >= 3, 10)
    pacer.stop()
    assert pacer.late_frames == len(submitted) and all(not f.any() for f in submitted)


def test_admission_one_slot_a_bounded_line_in_order() -> None:
    async def scenario() -> None:
        admission = Admission(max_queue=2)
        first, second, third = admission.enter(), admission.enter(), admission.enter()
        assert first is not None and second is not None and third is not None
        assert admission.enter() is None  # past the line: refused
        assert first.ready and not second.ready and admission.position(third) == 2
        admission.leave(second)  # gave up waiting
        assert admission.position(third) == 1 and admission.queued == 1
        admission.leave(first)
        assert third.ready and admission.active and not admission.can_start_now()
        admission.leave(third)
        admission.leave(third)  # twice is harmless
        assert admission.can_start_now()

    asyncio.run(scenario())
