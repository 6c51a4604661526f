"""A memoryless model of the loudspeaker's saturation, ahead of the linear canceller's filter.

A small loudspeaker played loud compresses its peaks: the echo is then `h * f(x)` (the room's
response `h` applied to what the speaker really played, `f(x)`), and a linear filter on `x` alone
leaves 10-18 dB of the echo in the error whatever it learns. This is the cascade ("Hammerstein")
nonlinear echo canceller of Stenger & Kellermann ("Adaptation of a memoryless preprocessor for
nonlinear acoustic echo cancelling", Signal Processing 2000) and the power filters of Kuech &
Kellermann, with a generic odd curve instead of a power series:

    f(x) = x + sum_k a_k * sign(x) * max(|x| - t_k, 0)

a piecewise-linear curve whose slope changes by `a_k` at each knot `t_k` (a few, geometric, in
absolute sample values: a speaker saturates at a level of its input, not of the voice's). With every
`a_k` at 0 it is the linear canceller. Odd powers (x^3, x^5) model a soft knee but not a hard limit:
fitted to speech through `limit * tanh(x / limit)` they leave the residual 18-22 dB down where this
curve leaves it ~38 dB down.

The filter `W` is shared: the echo of each basis signal through it, `z_k = W * b_k(x)` (one more
partitioned spectrum per knot), is what a coefficient adds to the echo estimate, so the `a_k` are
the least-squares fit of what the linear part leaves (`d - W * x`) on the `z_k`, with exponential
forgetting. The echo through the filter itself, `W * x`, is a regressor too (its coefficient is not
used): a filter whose gain is still off leaves a residual shaped like the echo, which every `z_k`
correlates with. Only blocks of echo alone are fitted (the error well under the echo estimate:
not the user talking, not a filter off the path), and the curve is used only once it explains a
part of what the filter leaves; a ridge term pulls each coefficient to 0 unless the data asks
otherwise. On a linear loudspeaker the coefficients stay at 0, and the filter's input is the far
end itself.
"""

from __future__ import annotations

import numpy as np

KNOTS = (0.05, 0.1, 0.2, 0.4)
"""Where the curve's slope may change (absolute sample values; speech at -18 dBFS RMS peaks near 1)."""
_FORGET = 1.0 - 1.0 / 250
"""Per block of the assistant's voice, the fit's memory (~5 s at 20 ms)."""
_RIDGE = 1e-2
"""The ridge, as a share of the regressors' mean power: a coefficient the data barely asks for stays 0."""
_SLOPE_RANGE = (0.0, 2.0)
"""The curve's slope after each knot stays between flat and twice its slope at 0."""
_GATE = 0.25
"""A block is fitted when the error is 6 dB under the echo estimate."""
_EXPLAINED_DB = 1.0
"""A curve that takes less than this off what the linear part leaves is not used (faded in up to
twice this): on a linear speaker, or while the filter is still far off, the fit is noise."""


class LoudspeakerModel:
    """The saturation curve's basis signals and coefficients, for a filter of `partitions` blocks of
    `block` samples (the spectra are those of the filter's overlap-save input, `2 * block` long)."""

    def __init__(self, block: int, partitions: int, knots: tuple[float, ...] = KNOTS) -> None:
        self.block = block
        self._knots = np.asarray(knots, dtype=np.float32)[:, None]
        k = len(knots)
        self._B = np.zeros((k, partitions, block + 1), dtype=np.complex64)
        """The basis signals' spectra, partition p holding the far block p back (as the filter's X)."""
        # The fit's normal equations: the echo through the filter, then each basis signal's.
        self._R: np.ndarray = np.zeros((k + 1, k + 1))
        self._r: np.ndarray = np.zeros(k + 1)
        self._t = 0.0
        self.explained_db = 0.0
        self.coefficients: np.ndarray = np.zeros(k, dtype=np.float32)
        """The `a_k`: how much the slope changes at each knot."""

    def push(self, x: np.ndarray) -> None:
        """The filter's newest input (the previous far block and this one): its basis spectra."""
        basis = np.sign(x) * np.maximum(np.abs(x) - self._knots, 0.0)
        self._B[:, 1:] = self._B[:, :-1]
        self._B[:, 0] = np.fft.rfft(basis, axis=1)

    def input_spectra(self, X: np.ndarray) -> np.ndarray:
        """The filter's input as the speaker played it: the far end's spectra plus the curve's."""
        if not self.coefficients.any():
            return X
        return X + np.einsum("k,kpf->pf", self.coefficients, self._B)

    def learn(self, W: np.ndarray, X: np.ndarray, e: np.ndarray) -> None:
        """One block of the assistant's voice: `e` the error with the current curve, `W` the filter,
        `X` the far end's own spectra; refits the coefficients from the blocks of echo alone."""
        b = self.block
        z = np.fft.irfft(np.einsum("pf,kpf->kf", W, self._B), axis=1)[:, b:].astype(np.float64)
        linear = np.fft.irfft(np.einsum("pf,pf->f", W, X))[b:].astype(np.float64)
        target = e.astype(np.float64) + self.coefficients.astype(np.float64) @ z
        echo = float(np.dot(linear, linear))
        # Echo alone, explained (by the curve as it is, or by the linear part: a curve gone wrong must
        # not stop its own refit) to within `_GATE`: not the user talking, not a filter off the path.
        if min(float(np.dot(e, e)), float(np.dot(target, target))) >= _GATE * echo:
            return
        # The echo through the filter as it is (W * x) is a regressor too, its coefficient unused: a
        # filter whose gain is still off (or a tail it does not reach) leaves a residual that looks
        # like the echo itself, and every basis signal correlates with the echo.
        regressors = np.vstack([linear, z])
        self._R = _FORGET * self._R + regressors @ regressors.T
        self._r = _FORGET * self._r + regressors @ target
        self._t = _FORGET * self._t + float(np.dot(target, target))
        ridge = _RIDGE * max(float(np.trace(self._R)) / len(self._r), 1e-30)
        full = np.linalg.solve(self._R + ridge * np.eye(len(self._r)), self._r)
        # How much of what the linear part leaves the curve explains: the residual energy of the fit
        # with the echo through the filter alone, against that with the curve too.
        left_linear = self._t - self._r[0] ** 2 / (self._R[0, 0] + ridge)
        left_curve = self._t - float(full @ self._r)
        self.explained_db = float(10 * np.log10(max(left_linear, 1e-30) / max(left_curve, 1e-30)))
        a = full[1:] * float(np.clip(self.explained_db / _EXPLAINED_DB - 1.0, 0.0, 1.0))
        slopes = np.clip(1.0 + np.cumsum(a), *_SLOPE_RANGE)
        self.coefficients = np.diff(slopes, prepend=1.0).astype(np.float32)
