"""The ideal linear canceller of a simulated room: how far any echo filter of a given length could go.

`kame bench echo --ideal` asks what the user's words in double talk would be if the echo were taken
out by the best filter there is, not one that has to learn: the Wiener solution of the room's own
echo (the simulation knows it sample for sample: the microphone with the assistant minus the same
run without it), given the loudspeaker's exact curve, fitted on the whole session at once (on each
side of the hidden delay jump, each frame taking the better of the two fits), with no mute and no
suppressor. What that leaves is the reverberation beyond the filter's span and nothing else; the
STT then hears the user under it. A canceller that learns online can only do worse; one whose
figures this bound already misses needs a longer filter, not better tuning.

The fit solves the normal equations with the far end's autocorrelation (a Toeplitz system, by
Levinson's recursion): for 400 ms at 24 kHz, about 0.1 s of CPU per fit here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kame_cli.clock import FRAME_SAMPLES

if TYPE_CHECKING:
    import numpy as np

IDEAL_SPANS_MS = (400, 800)
"""The filter spans reported: the linear canceller's own (20 partitions of 20 ms), and twice it."""
_SETTLE_S = 0.5
"""After the jump, this much is left out of the second fit: the echo of what was played before it."""


def ideal_residual(
    far: np.ndarray,
    echo: np.ndarray,
    taps: int,
    *,
    speaker_limit: float | None = None,
    split: int | None = None,
    rate: int = 24_000,
) -> np.ndarray:
    """What the best `taps`-long filter from `far` (through the loudspeaker's `speaker_limit` curve)
    leaves of `echo` (same length, same time line). With `split` (the sample where the echo path
    jumped) the two sides are fitted apart and each 80 ms frame keeps the smaller of the two residuals:
    an ideal switch at the right moment."""
    import numpy as np

    from kame_cli.audio_io.room import soft_clip

    x = soft_clip(np.asarray(far, dtype=np.float64), speaker_limit)
    e = np.asarray(echo, dtype=np.float64)
    if x.shape != e.shape:
        raise ValueError(f"far and echo differ in length: {x.shape[0]} and {e.shape[0]}")
    spans = [(0, x.shape[0])]
    if split is not None and 0 < split < x.shape[0]:
        spans = [(0, split), (min(split + round(_SETTLE_S * rate), x.shape[0]), x.shape[0])]
    residuals = [e - _apply(x, _wiener(x[lo:hi], e[lo:hi], taps)) for lo, hi in spans if hi - lo >= 2 * taps]
    if not residuals:
        return e.copy()
    frames = e.shape[0] // FRAME_SAMPLES * FRAME_SAMPLES
    stacked = np.stack(residuals)
    per_frame = stacked[:, :frames].reshape(len(residuals), -1, FRAME_SAMPLES)
    best = np.argmin((per_frame**2).sum(axis=2), axis=0)
    out = stacked[np.repeat(best, FRAME_SAMPLES), np.arange(frames)]
    tail = stacked[int(best[-1]) if best.size else 0, frames:]
    return np.concatenate([out, tail])


def _wiener(x: np.ndarray, d: np.ndarray, taps: int) -> np.ndarray:
    """The least-squares FIR filter from `x` to `d` (the autocorrelation method)."""
    from scipy.linalg import solve_toeplitz

    r = _correlate(x, x, taps)
    # A whisper of diagonal loading: silent stretches of the far end leave the system ill-posed there.
    r[0] = r[0] * (1.0 + 1e-4) + 1e-12
    return solve_toeplitz(r, _correlate(x, d, taps))


def _correlate(a: np.ndarray, b: np.ndarray, lags: int) -> np.ndarray:
    """sum_n a[n] b[n + k] for k = 0 .. lags-1 (by FFT)."""
    from scipy.signal import correlate

    zero = a.shape[0] - 1  # where lag 0 sits in the full correlation
    return correlate(b, a, mode="full", method="fft")[zero : zero + lags]


def _apply(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    from scipy.signal import fftconvolve

    return fftconvolve(x, h)[: x.shape[0]]
