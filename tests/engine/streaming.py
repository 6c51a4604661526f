"""Driving a real `FrontendLoop` from tests: frames in, outputs and events collected."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from kame_cli.bus import EventBus
from kame_cli.clock import FRAME_SAMPLES, SessionClock
from kame_cli.engine.loader import Frontend
from kame_cli.engine.loop import FrontendLoop
from kame_cli.events import Event, OracleCommand


def voice_like_frames(count: int, seed: int = 0) -> list[np.ndarray]:
    """Deterministic frames: a wandering tone plus a little noise, at speech level."""
    rng = np.random.default_rng(seed)
    t = np.arange(count * FRAME_SAMPLES) / 24_000
    pitch = 180 + 60 * np.sin(2 * np.pi * 0.7 * t)
    signal = 0.2 * np.sin(2 * np.pi * np.cumsum(pitch) / 24_000) + 0.01 * rng.standard_normal(t.size)
    return [chunk.astype(np.float32) for chunk in signal.reshape(count, FRAME_SAMPLES)]


@dataclass
class StreamResult:
    loop: FrontendLoop
    outputs: list[tuple[int, np.ndarray]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    def of(self, kind: type) -> list:
        return [event for event in self.events if isinstance(event, kind)]


def stream(
    frontend: Frontend,
    frames: Sequence[np.ndarray],
    *,
    seed: int | None = 0,
    at_step: Mapping[int, Sequence[OracleCommand]] | None = None,
    budget_ms: float = 80.0,
) -> StreamResult:
    """Run `frames` through a fresh loop; `at_step[i]` commands arrive just before step i.

    With `at_step`, frames go in one at a time (each after the previous step finished), so the
    step at which a command lands is exact; without it they are queued all at once (fast mode).
    """
    bus = EventBus()
    sub = bus.subscribe("test", maxsize=0)
    outputs: list[tuple[int, np.ndarray]] = []
    loop = FrontendLoop(
        frontend,
        bus,
        SessionClock(),
        on_output=lambda step, pcm: outputs.append((step, pcm)),
        seed=seed,
        budget_ms=budget_ms,
    )
    loop.start()
    try:
        for index, frame in enumerate(frames):
            if at_step is not None:
                for command in at_step.get(index, ()):
                    loop.send_oracle(command)
            loop.submit_frame(frame)
            if at_step is not None:
                _wait_for(lambda i=index: loop.steps > i or loop.error is not None)
        loop.end_input()
        assert loop.join(timeout=60), "the loop did not finish its frames"
    finally:
        loop.stop(timeout=5)
    assert loop.error is None, loop.error
    return StreamResult(loop, outputs, sub.drain())


def _wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the front-end loop")
        time.sleep(0.0005)
