"""One monotonic clock for a whole session: every event's time is read from it."""

from __future__ import annotations

import time

FRAME_SAMPLES = 1920
"""Samples in one front-end frame (80 ms at 24 kHz); Mimi's frame rate fixes it."""
SAMPLE_RATE = 24_000
FRAME_SECONDS = FRAME_SAMPLES / SAMPLE_RATE


class SessionClock:
    """Seconds since the session started, on `time.monotonic`; safe to read from any thread."""

    def __init__(self, origin: float | None = None) -> None:
        self.origin = time.monotonic() if origin is None else origin

    def now(self) -> float:
        return time.monotonic() - self.origin

    def at(self, monotonic_time: float) -> float:
        """Session time of a raw `time.monotonic()` reading."""
        return monotonic_time - self.origin
