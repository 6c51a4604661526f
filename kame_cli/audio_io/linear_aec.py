"""kame's own echo canceller (`[audio] aec_engine = "linear"`): an adaptive filter, then a gentle
residual-echo suppressor.

WebRTC's AEC3 removes echo well, but its suppressor treats the user talking over the assistant
(double talk) as echo and cuts most of the user's words with it. This canceller keeps the two apart:

- A partitioned-block frequency-domain adaptive filter (overlap-save) models the echo path from
  the far end (what the speaker played) to the microphone and subtracts its estimate: a linear
  operation, so the user's voice passes through it untouched. The gradient is constrained one
  partition per block in turn, as in the "alternately updated" MDF (AUMDF).
- Its step size follows Valin's rule (IEEE TASLP 2007, "On adjusting the learning rate in frequency
  domain echo cancellation with double-talk"): each bin adapts in proportion to the share of the
  residual that is still echo, which the filter's leakage estimate gives. When the user talks, the
  residual is mostly their voice, the step drops, and the filter does not diverge.
- A residual-echo suppressor attenuates each bin by the echo the filter leaves: the echo estimate's
  power times the lowest residual-to-estimate ratio of the last ~2 s (a moment of echo alone).
  Where the user speaks, the residual is far above that and the gain stays near 1. Until the filter
  has learned anything (the assistant's first ~1.6 s of voice), the microphone is muted while the
  assistant speaks.

The output is one block late: the suppressor's 50 %-overlap synthesis needs the next block.
"""

from __future__ import annotations

from collections import deque

import numpy as np

_EPS = 1e-10
_FIRST_RATE = 0.25
"""Step size before the filter has learned anything (scaled down when the error outweighs the far end)."""
_OVER_SUBTRACTION = 2.0
"""The residual echo estimate is doubled in the suppressor's gain: a margin for its error."""
_TAIL_DECAY = 0.6
"""Per block, how slowly the suppressor lets go of an echo estimate (a room's reverberation)."""
_RATIO_BLOCKS = 100
"""Blocks of the assistant's voice (2 s at 20 ms) whose lowest residual ratio the suppressor uses."""
_MIN_RATIO = 1e-3


class LinearEchoCanceller:
    """Adaptive filter plus residual-echo suppression on blocks of `block` samples; one thread owns it.

    Single precision throughout (as Speex's MDF): the filter's accuracy is bounded by the room, not
    by float32, and the arrays then stay in cache, which makes a block ~10x cheaper on a small CPU.
    """

    def __init__(
        self,
        block: int = 480,
        partitions: int = 20,
        mu_max: float = 0.5,
        suppression_floor_db: float = -40.0,
        far_active_dbfs: float = -50.0,
    ) -> None:
        self.block = block
        self.partitions = partitions
        n = 2 * block
        bins = block + 1
        self._mu_max = mu_max
        self._floor = np.float32(10 ** (suppression_floor_db / 20))
        # Parseval: the sum of |rfft(x)|^2 over the bins is about n/2 times the sum of x^2.
        self._far_active = 10 ** (far_active_dbfs / 10) * n * block
        self._far_prev: np.ndarray = np.zeros(block, dtype=np.float32)
        self._zeros = np.zeros(block, dtype=np.float32)
        self._X = np.zeros((partitions, bins), dtype=np.complex64)  # partition p: far block p back
        self._W = np.zeros((partitions, bins), dtype=np.complex64)  # the echo path, per partition
        self._X_power = np.zeros((partitions, bins), dtype=np.float32)
        self._X_power_sum = np.zeros(bins, dtype=np.float64)
        self._grad = np.empty_like(self._X)
        self._constrain_next = 0
        self._far_on = False
        self._ratios: deque[float] = deque(maxlen=_RATIO_BLOCKS)
        self._leak = 1.0
        """Valin's leakage estimate: residual echo power over echo estimate power (for the step)."""
        self._pey = 0.0
        self._pyy = 1.0
        self._adapted = False
        self._adapt_sum = 0.0
        # Suppressor: sqrt-Hann analysis/synthesis at 50 % overlap (perfect reconstruction).
        self._window = np.sqrt(0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)).astype(np.float32)
        self._e_prev: np.ndarray = np.zeros(block, dtype=np.float32)
        self._y_prev: np.ndarray = np.zeros(block, dtype=np.float32)
        self._ola: np.ndarray = np.zeros(block, dtype=np.float32)
        self._res_echo: np.ndarray = np.zeros(bins, dtype=np.float32)
        self._res_err: np.ndarray = np.zeros(bins, dtype=np.float32)

    @property
    def adapted(self) -> bool:
        """The filter has learned the echo path well enough to be trusted (suppression is on)."""
        return self._adapted

    def process(self, near: np.ndarray, far: np.ndarray) -> np.ndarray:
        """One block: `near` (microphone) and `far` (what the speaker played over the same time, or
        a little earlier: the echo must come after it). Returns the cleaned block, one block late."""
        b = self.block
        d = np.asarray(near, dtype=np.float32)
        x = np.concatenate([self._far_prev, np.asarray(far, dtype=np.float32)])
        self._far_prev = x[b:]
        self._X[1:] = self._X[:-1]
        self._X[0] = np.fft.rfft(x)
        # The far end's power per bin over the whole filter span, kept as a running sum.
        self._X_power_sum -= self._X_power[-1]
        self._X_power[1:] = self._X_power[:-1]
        self._X_power[0] = self._X[0].real ** 2 + self._X[0].imag ** 2
        self._X_power_sum += self._X_power[0]
        y = np.fft.irfft(np.einsum("pk,pk->k", self._W, self._X))[b:]
        e = d - y
        self._adapt(e, y)
        return self._suppress(e, y)

    # --- the adaptive filter ----------------------------------------------------------------------

    def _adapt(self, e: np.ndarray, y: np.ndarray) -> None:
        E = np.fft.rfft(np.concatenate([self._zeros, e]))
        Y = np.fft.rfft(np.concatenate([self._zeros, y]))
        pee = E.real**2 + E.imag**2
        pyy = Y.real**2 + Y.imag**2
        pxx = self._X_power[0]
        sxx, see, syy = float(pxx.sum()), float(pee.sum()) + _EPS, float(pyy.sum())
        # "Speaking" over the filter's span: the echo of a word goes on after the word.
        self._far_on = float(self._X_power_sum.sum()) / self.partitions >= self._far_active
        if sxx < self._far_active:
            return  # the assistant is silent: nothing to learn the echo path from
        # Leakage: how much of the echo estimate's power shows up in the residual (regression of the
        # residual's power spectrum on the estimate's), smoothed faster when the echo dominates.
        dee, dyy = pee - pee.mean(), pyy - pyy.mean()
        alpha = min(0.5, 0.02 * syy / see)
        self._pey = (1 - alpha) * self._pey + alpha * float(np.dot(dee, dyy))
        self._pyy = max((1 - alpha) * self._pyy + alpha * float(np.dot(dyy, dyy)), _EPS)
        self._leak = min(max(self._pey / self._pyy, 0.0), 1.0)
        if syy > 0.0:
            self._ratios.append(see / syy)
        if not self._adapted:
            # Nothing learned yet: adapt as far as the error is plausibly echo (the far end's power
            # against the error's), which also slows down when the user speaks.
            first = min(_FIRST_RATE, _FIRST_RATE * sxx / see)
            rate = np.full(pee.shape, first, dtype=np.float32)
            self._adapt_sum += first
            if self._adapt_sum > self.partitions and self._leak < 0.5:
                self._adapted = True
        else:
            # The share of each bin's residual that is echo (Valin's rule), bounded.
            rer = min(max((1e-4 * sxx + 3.0 * self._leak * syy) / see, 0.0), 0.5)
            echo = np.minimum(self._leak * pyy, 0.5 * pee)
            rate = np.minimum((0.7 * echo + 0.3 * rer * pee) / (pee + _EPS), self._mu_max)
        # Normalized by the far end's power over the whole filter span, not the newest block's:
        # after a word ends, the echo of the older blocks still fills the error, and a step
        # divided by a near-silent block's power would blow the filter up.
        far_power = self._X_power_sum / self.partitions
        step = (rate / (far_power + 1e-6 * len(pxx))).astype(np.float32) * E
        # The step is shared out over the partitions in proportion to the echo path's energy in
        # each (as MDF does): the direct path and early reflections learn fastest, and the shares
        # sum below 1, so that the filter as a whole never steps past the error.
        w = self._W
        energy = np.sqrt(np.einsum("pk,pk->p", w.real, w.real) + np.einsum("pk,pk->p", w.imag, w.imag))
        share = energy + 0.1 * float(energy.max()) + 1e-9
        share *= 0.99 / float(share.sum())
        np.conjugate(self._X, out=self._grad)
        self._grad *= step
        self._grad *= share.astype(np.float32)[:, None]
        self._W += self._grad
        # That update is unconstrained (it lets a partition's taps wrap around); one partition a
        # block is brought back to `block` causal taps, in turn: the filter stays a linear
        # convolution at a fraction of the cost of constraining every update.
        p = self._constrain_next
        self._constrain_next = (p + 1) % self.partitions
        taps = np.fft.irfft(self._W[p])
        taps[self.block :] = 0.0
        self._W[p] = np.fft.rfft(taps)

    # --- residual-echo suppression ----------------------------------------------------------------

    def _residual_ratio(self) -> float:
        """The residual echo's power against the echo estimate's: the lowest error-to-estimate ratio
        of the last ~2 s of the assistant's voice (minimum statistics). The user's voice only ever
        raises that ratio, so its minimum is a moment of echo alone. (Valin's leakage, fitted for
        the step size, runs lower than the residual heard: it leaves out the reverberation the
        filter does not reach.)"""
        if not self._ratios:
            return 1.0
        return max(min(self._ratios), _MIN_RATIO)

    def _suppress(self, e: np.ndarray, y: np.ndarray) -> np.ndarray:
        b = self.block
        E = np.fft.rfft(np.concatenate([self._e_prev, e]) * self._window)
        Y = np.fft.rfft(np.concatenate([self._y_prev, y]) * self._window)
        self._e_prev, self._y_prev = e, y
        echo = self._residual_ratio() * (Y.real**2 + Y.imag**2)
        # A room's echo decays over a few blocks after the estimate's: the estimate holds as a tail.
        self._res_echo = np.maximum(echo, _TAIL_DECAY * self._res_echo)
        self._res_err = 0.5 * self._res_err + 0.5 * (E.real**2 + E.imag**2)
        gain = np.clip(1.0 - _OVER_SUBTRACTION * self._res_echo / (self._res_err + _EPS), self._floor, 1.0)
        if not self._adapted and self._far_on:
            # The filter has learned nothing yet: all of the error may be echo, so the microphone
            # is muted while the assistant speaks, as AEC3 does at first.
            gain[:] = self._floor
        out = np.fft.irfft(gain * E) * self._window
        result = self._ola + out[:b]
        self._ola = out[b:]
        return result
