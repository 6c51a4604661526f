"""The frame contract shared by every source and sink, and the buffers that re-block audio into frames."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from kame_cli.clock import FRAME_SAMPLES, SAMPLE_RATE

FrameCallback = Callable[[np.ndarray], None]
"""Receives one frame: FRAME_SAMPLES float32 samples at 24 kHz, mono, owned by the receiver."""


class FrameSource(Protocol):
    """Delivers 24 kHz mono float32 frames of FRAME_SAMPLES to `on_frame`, a microphone or a file alike.

    A source never lets an exception escape its own thread: it keeps it in `error` and ends, so the
    session can poll `error` (and `wait(0)`) and stop with one line.
    """

    @property
    def frames_delivered(self) -> int: ...

    @property
    def duration_s(self) -> float | None:
        """Length of the input in seconds; None for a live device."""
        ...

    @property
    def error(self) -> BaseException | None:
        """None unless the source failed; then why, and `wait` returns True.

        A KameError with a one-line message when the input itself failed (a file that cannot be
        decoded, a device whose stream died), or the exception `on_frame` raised, which ended the feed.
        """
        ...

    def start(self, on_frame: FrameCallback) -> None: ...

    def stop(self) -> None: ...

    def wait(self, timeout: float | None = None) -> bool:
        """True once the source ended on its own (end of file, device gone); False on timeout."""
        ...


class FrameSink(Protocol):
    """Takes 24 kHz mono float32 frames for `step`; `write` never blocks, `close` flushes within a bound."""

    def start(self) -> None: ...

    def write(self, step: int, pcm: np.ndarray) -> None: ...

    def close(self) -> None: ...


def frame_blocksize(device_rate: int) -> int:
    """Device samples lasting one frame: the block size a stream at `device_rate` is opened with."""
    return round(FRAME_SAMPLES * device_rate / SAMPLE_RATE)


def as_frame(pcm: np.ndarray) -> np.ndarray:
    """A private float32 copy of one frame; a wrong length is a caller bug, so it raises ValueError."""
    frame = np.array(pcm, dtype=np.float32, copy=True).reshape(-1)
    if frame.shape[0] != FRAME_SAMPLES:
        raise ValueError(f"a frame holds {FRAME_SAMPLES} samples, got shape {np.shape(pcm)}")
    return frame


def downmix(block: np.ndarray) -> np.ndarray:
    """Mono float32 from a (samples,) or (samples, channels) block: the mean of the channels."""
    if block.ndim == 1:
        return block.astype(np.float32, copy=False)
    if block.shape[1] == 1:
        return block[:, 0].astype(np.float32, copy=False)
    return block.mean(axis=1, dtype=np.float32)


class SampleFifo:
    """A growable first-in first-out buffer of float32 samples, used by a single thread."""

    def __init__(self, capacity: int = 4 * FRAME_SAMPLES) -> None:
        self._buf = np.zeros(capacity, dtype=np.float32)
        self._start = 0
        self._end = 0

    def __len__(self) -> int:
        return self._end - self._start

    def push(self, samples: np.ndarray) -> None:
        n = samples.shape[0]
        if n == 0:
            return
        if self._end + n > self._buf.shape[0]:
            held = self._end - self._start
            if held + n > self._buf.shape[0]:
                grown = np.zeros(max(2 * self._buf.shape[0], held + n), dtype=np.float32)
                grown[:held] = self._buf[self._start : self._end]
                self._buf = grown
            else:
                # Compacting keeps the buffer at its steady-state size: no allocation per block.
                self._buf[:held] = self._buf[self._start : self._end]
            self._start, self._end = 0, held
        self._buf[self._end : self._end + n] = samples
        self._end += n

    def pop_into(self, out: np.ndarray) -> int:
        """Moves up to len(out) samples into `out`; returns how many it moved."""
        n = min(out.shape[0], self._end - self._start)
        out[:n] = self._buf[self._start : self._start + n]
        self._start += n
        if self._start == self._end:
            self._start = self._end = 0
        return n

    def pop(self, n: int) -> np.ndarray:
        """A copy of up to `n` samples from the front."""
        out = np.empty(min(n, len(self)), dtype=np.float32)
        self.pop_into(out)
        return out


class FrameAssembler:
    """Re-blocks audio of any block size into frames of FRAME_SAMPLES, handing each one to `on_frame`."""

    def __init__(self, on_frame: FrameCallback) -> None:
        self._on_frame = on_frame
        self._fifo = SampleFifo()
        self.frames_emitted = 0

    @property
    def pending_samples(self) -> int:
        return len(self._fifo)

    def push(self, samples: np.ndarray) -> None:
        self._fifo.push(samples)
        while len(self._fifo) >= FRAME_SAMPLES:
            self._on_frame(self._fifo.pop(FRAME_SAMPLES))
            self.frames_emitted += 1

    def flush(self) -> None:
        """Emits what is left as a last frame padded with zeros (nothing if empty)."""
        if len(self._fifo) == 0:
            return
        frame = np.zeros(FRAME_SAMPLES, dtype=np.float32)
        self._fifo.pop_into(frame)
        self._on_frame(frame)
        self.frames_emitted += 1
