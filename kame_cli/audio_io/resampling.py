"""Streaming sample-rate conversion (soxr): devices and files not at 24 kHz, and the STT's 16 kHz input."""

from __future__ import annotations

import numpy as np
import soxr


class StreamResampler:
    """Converts a continuous mono float32 stream block by block; a pass-through when the rates match."""

    def __init__(self, in_rate: int, out_rate: int, quality: str = "HQ") -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._stream = (
            None
            if in_rate == out_rate
            else soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality=quality)
        )

    @property
    def passthrough(self) -> bool:
        return self._stream is None

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Resampled samples for this block (soxr holds back a few for its filter until `flush`)."""
        samples = np.ascontiguousarray(samples, dtype=np.float32)
        if self._stream is None:
            return samples
        return self._stream.resample_chunk(samples)

    def flush(self) -> np.ndarray:
        """The samples still held by the filter, at the end of the stream (then `reset` to reuse it)."""
        if self._stream is None:
            return np.zeros(0, dtype=np.float32)
        return self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)

    def reset(self) -> None:
        """Forget the filter's state: the next block starts a new stream."""
        if self._stream is not None:
            self._stream.clear()


def resampled(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """A whole clip at `rate_out`, through the same streaming resampler the live audio path uses."""
    resampler = StreamResampler(rate_in, rate_out)
    return np.concatenate([resampler.process(audio), resampler.flush()])
