"""The linear canceller's residual-echo suppressor: a gain per frequency bin after the adaptive filter.

A loudspeaker driven into saturation adds an echo no linear filter models (its harmonics and
intermodulation), and reverberation longer than the filter, or a path the filter has not yet
learned, leaves more: 10-20 dB of echo stays in the error whatever the filter does. The suppressor
estimates that residual per bin from the filter's own echo estimate `Y`, whose spectrum the
distortion follows (spread across neighbouring bins) and whose reverberation decays on after it:

    B(k) = max(|Y(k)|^2 / 2 + (band mean of |Y|^2) / 2,  tail * B(k) of the previous block)
    R(k) = leak(band) * B(k)

and takes `over * R(k)` off each bin's power, down to a floor: G(k) = max(floor, 1 - over R / |E|^2),
at once when it falls and over a few blocks when it rises (the residual's own decay).

`leak` is learned per band in two ways, and the larger is used: the error-to-estimate ratio in
blocks of echo alone (the error well under the echo estimate: the user's voice raises the error
above it, so their blocks are left out), and the regression of the error's power on the estimate's
(their covariance over the estimate's variance, as Speex's preprocessor does for its residual echo):
the user's voice does not correlate with the echo estimate, so it adds no bias, and the regression
follows a residual that grows (a path the filter lost) where the first way waits for echo alone.

A bin where the user's voice dominates the error has |E|^2 >> R and passes. Where the gain takes a
bin below the room's noise, noise of random phase fills it back to about that noise, never above
what the bin held: on a background the suppressor silenced, the fragments of residual it missed
stood out and the STT read them as words (39 over the wide tuning rooms 100-111; 1 with the fill).
The room's noise is the quietest recent power of each bin, 15-20 dB under the noise's mean; half of
it, the first fill, still left the background that far down, and held-out wide room 856 read the
residual of a jump of the echo's delay there as "so, I see". Ten times it: 5-10 dB under the mean.
Noise shaped like the echo estimate instead is read as the assistant's words: its envelope alone
carries them.

With `double_talk` (the linear canceller's default, after its mute) the suppressor first asks whether
the user is talking: in a block where the error stands above `_DT_MARGIN` times the estimated
residual (plus the room's noise) in a quarter of the speech bands (200 Hz-4 kHz), for three blocks
running (a residual's peak at a clipped word lasts a block, a syllable several), it takes the
residual off only once (`over` 1) and no deeper than -6 dB, and lets the gain up at once, for the
next 0.5 s. Elsewhere it suppresses as above. A residual that comes and goes with the echo estimate
seldom clears that bar; a user's voice does, from their first syllables. Over the wide tuning rooms
(seeds 100-124) it takes the echo's median ERLE from 17.7 to 25.4 dB while the user's voice in
double talk stands as far above what the output adds or takes as with the filter alone (11.9 dB
against 11.8; the plain suppressor: 5.4). With -12 dB in double talk it took 1.5 dB more echo and
more of the user (their errors rose from 52.7 to 61.8 % on rooms 100-104; -6 dB: 49.1 %); without the
gain's instant rise, each syllable's onset was cut (59.4 % over 100-124, 45.0 % with the filter alone).

That test alone mistakes a residual that outgrows its estimate for the user: replayed on the wide
tuning rooms it held the gentle gain through ~40 % of the moments of echo alone. Where a speech
detector runs (`voice`: barge-in ducking's Silero VAD, `barge_in.py`) the gentle gain also needs it
to have heard a voice within 0.5 s; that detector hears `ungated`, the output as it would be without
this condition, since the deeper suppression it allows would hide the user's first syllables from
it (fed the output instead, it ducked the assistant less in 7 of the 25 wide tuning rooms).

It also applies the canceller's mute (one gain per block) and does the framing: a sqrt-Hann
analysis/synthesis pair at 50 % overlap, so the output is one block late and, with every gain 1,
the input itself.
"""

from __future__ import annotations

from collections import deque

import numpy as np

_EPS = 1e-12
_LEAK_RATE = 0.05
"""Per block, how far (a share, in dB) the leak of echo alone moves toward the block's ratio (~1 s)."""
_COVARIANCE_RATE = 0.05
"""Per block of the assistant's voice, the regression's smoothing (~1 s)."""
_LEAK_RANGE_DB = (-45.0, 20.0)
_ECHO_ALONE = 0.5
"""A block counts as echo alone when the error's power is under this share of the echo estimate's."""
_NOISE_RISE = 10 ** (3 / 10 / 50)
"""Per block, how fast a bin's noise estimate may rise (3 dB a second) above its quietest power."""
_COMFORT = 10.0
"""A suppressed bin is filled with noise up to this many times the room's noise there (its
minimum, not its mean), and no louder than it came in."""
_DT_MARGIN = 4.0
"""Double talk: a band's error this many times its estimated residual (6 dB) holds something else."""
_DT_NOISE = 4.0
"""...and this many times the room's noise floor there (the floor is a minimum: noise alone often
stands 3-5 dB above it)."""
_DT_SHARE = 0.25
"""...in this share of the speech bands (200 Hz-4 kHz),"""
_DT_RUN = 3
"""...in this many blocks running (60 ms: a residual's peak at a clipped word lasts about a block)."""
_DT_HOLD = 25
"""Blocks (0.5 s) the gentle gain holds after the last block of double talk: through a user's
syllable gaps, where the next syllable must not start suppressed."""
_DT_OVER = np.float32(1.0)
_DT_FLOOR_DB = -6.0
"""In double talk the residual is taken off once, not `over` times, and no deeper than this."""
_DT_FLOOR = np.float32(10 ** (_DT_FLOOR_DB / 20))
_DT_RELEASE = np.float32(1.0)
"""...and the gain rises at once."""


class ResidualEchoSuppressor:
    """Per-bin gains after the linear filter, on blocks of `block` samples; one thread owns it.

    `over`: how many times the estimated residual is taken off (its estimate is an average: the
    residual of a clipped peak is several times it); `floor_db`: the deepest gain; `tail`: the
    residual's decay per block (0.7: RT60 ~0.8 s); `release`: the share of a gain's rise per block.
    """

    def __init__(
        self,
        block: int,
        over: float = 5.0,
        floor_db: float = -30.0,
        tail: float = 0.7,
        release: float = 0.3,
        bands: int = 24,
        double_talk: bool = False,
    ) -> None:
        self.block = block
        n = 2 * block
        bins = block + 1
        self._over = np.float32(over)
        self._floor = np.float32(10 ** (floor_db / 20))
        self._tail = np.float32(tail)
        self._release = np.float32(release)
        # Periodic sqrt-Hann: its square (analysis x synthesis) sums to 1 at 50 % overlap.
        self._window = np.sqrt(0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)).astype(np.float32)
        # Bands: 100 Hz at the bottom, then geometric (about a third of an octave at 24 kHz).
        edges = np.unique(np.round(np.geomspace(4, bins, bands)).astype(int))
        self._edges = np.concatenate([[0], edges[:-1]])
        self._band_of = np.repeat(np.arange(self._edges.shape[0]), np.diff(np.append(self._edges, bins)))
        self._band_size = np.bincount(self._band_of).astype(np.float32)
        nb = self._edges.shape[0]
        self._lo, self._hi = (10 ** (db / 10) for db in _LEAK_RANGE_DB)
        # Before anything is learned the whole echo estimate is taken as residual (a filter not
        # yet converged).
        self._log_leak_alone = np.zeros(nb)
        self._mean_e = np.zeros(nb)
        self._mean_b = np.zeros(nb)
        self._cov_eb = np.zeros(nb)
        self._var_b = np.zeros(nb)
        self._leak_regression = np.ones(nb)
        self._basis = np.zeros(bins, dtype=np.float32)
        self._gain: np.ndarray = np.ones(bins, dtype=np.float32)
        self._e_prev = np.zeros(block, dtype=np.float32)
        self._y_prev = np.zeros(block, dtype=np.float32)
        self._out_prev: np.ndarray = np.zeros(block, dtype=np.float32)
        self._gain_ungated: np.ndarray = self._gain
        self._ungated_prev: np.ndarray = np.zeros(block, dtype=np.float32)
        self.ungated: np.ndarray = np.zeros(block, dtype=np.float32)
        """The last block as it would be had the gentle gain not needed `voice` (`process`)."""
        self._gentle_prev: np.ndarray = np.zeros(block, dtype=np.float32)
        self.gentle: np.ndarray = np.zeros(block, dtype=np.float32)
        """The last block as it would be had the user been talking: the gentle gain throughout (with a
        `voice` detector only). The STT's audio is revised to it over the user's onset, once that
        detector is sure of them (`EchoCanceller.take_revision`)."""
        self._noise: np.ndarray = np.full(bins, np.inf)
        self._double_talk = double_talk
        lo_bin, hi_bin = round(200 / 12_000 * block), round(4_000 / 12_000 * block)
        self._speech_bands = (self._edges >= lo_bin) & (self._edges < hi_bin)
        self._near_ratios: deque[np.ndarray] = deque(maxlen=_DT_RUN)
        self._near_hold = 0
        self.double_talk_blocks = 0
        """Blocks the gentle double-talk gain was used in (for tests and diagnostics)."""
        self._rng = np.random.default_rng(0)  # the comfort noise's phases: the same output run to run

    @property
    def user_talking(self) -> bool:
        """The double-talk detector's verdict as of the last block (held `_DT_HOLD` blocks after it)."""
        return self._near_hold > 0

    @property
    def leak_db(self) -> np.ndarray:
        """The residual-to-estimate power ratio per band now used (dB)."""
        return 10 * np.log10(self._leak())

    def process(
        self, e: np.ndarray, y: np.ndarray, block_gain: float, learn: bool, voice: bool | None = None
    ) -> np.ndarray:
        """The error block `e` (microphone minus the echo estimate `y`) with the residual suppressed and
        `block_gain` applied, one block late. `learn`: the assistant is speaking (the leak may adapt).
        `voice`: a speech detector's verdict (None: none runs); with `double_talk`, the gentle gain then
        needs it too, and `ungated` is the block as it would be without it (what that detector hears)."""
        E = np.fft.rfft(np.concatenate([self._e_prev, e]) * self._window)
        Y = np.fft.rfft(np.concatenate([self._y_prev, y]) * self._window)
        self._e_prev, self._y_prev = e, y
        pe = (E.real**2 + E.imag**2).astype(np.float32)
        py = (Y.real**2 + Y.imag**2).astype(np.float32)
        band_py = np.add.reduceat(py, self._edges) / self._band_size
        self._basis = np.maximum(0.5 * py + 0.5 * band_py[self._band_of], self._tail * self._basis)
        if learn:
            band_pe = np.add.reduceat(pe, self._edges).astype(np.float64)
            band_b = np.add.reduceat(self._basis, self._edges).astype(np.float64)
            self._regress(band_pe, band_b)
            if float(pe.sum()) < _ECHO_ALONE * float(py.sum()):
                ratio = np.log(np.clip((band_pe + _EPS) / (band_b + _EPS), self._lo, self._hi))
                self._log_leak_alone += _LEAK_RATE * (ratio - self._log_leak_alone)
        residual = self._leak().astype(np.float32)[self._band_of] * self._basis
        near = self._double_talk and self._near_end(pe, residual)
        gentle = near and voice is not False
        self.double_talk_blocks += int(gentle)
        self._gain = self._next_gain(self._gain, pe, residual, gentle)
        self._noise = np.minimum(self._noise * _NOISE_RISE, pe)
        phases = np.exp(2j * np.pi * self._rng.random(pe.shape[0]))
        result, self._out_prev = self._synthesize(E, pe, self._gain, phases, block_gain, self._out_prev)
        if voice is not None and self._double_talk:
            self._gain_ungated = self._next_gain(self._gain_ungated, pe, residual, near)
            self.ungated, self._ungated_prev = self._synthesize(
                E, pe, self._gain_ungated, phases, block_gain, self._ungated_prev
            )
            # The gentle gain rises at once: it is this block's target alone, with no state to carry.
            self.gentle, self._gentle_prev = self._synthesize(
                E, pe, self._target(pe, residual, gentle=True), phases, block_gain, self._gentle_prev
            )
        else:
            self._gain_ungated, self.ungated, self._ungated_prev = self._gain, result, self._out_prev
            self.gentle = result
        return result

    def _next_gain(self, gain: np.ndarray, pe: np.ndarray, residual: np.ndarray, gentle: bool) -> np.ndarray:
        """Each bin's gain for this block, from the last: `gentle` while the user talks (what the estimate
        overstates would take their words, and a gain that climbs back over a few blocks would cut each
        syllable's onset)."""
        target = self._target(pe, residual, gentle)
        release = _DT_RELEASE if gentle else self._release
        # Down at once (an echo onset), back up over a few blocks (the residual's own decay).
        return np.where(target < gain, target, gain + release * (target - gain))

    def _target(self, pe: np.ndarray, residual: np.ndarray, gentle: bool) -> np.ndarray:
        """Each bin's gain with the residual taken off `over` times (once, `gentle`), above the floor."""
        over, floor = (_DT_OVER, _DT_FLOOR) if gentle else (self._over, self._floor)
        return np.maximum(floor, 1.0 - over * residual / (pe + _EPS))

    def _synthesize(
        self,
        E: np.ndarray,
        pe: np.ndarray,
        gain: np.ndarray,
        phases: np.ndarray,
        block_gain: float,
        prev: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The block out at `gain`, the suppressed bins filled with the room's noise; and the overlap-add's
        second half, for the next block."""
        fill = np.sqrt(np.maximum(np.minimum(_COMFORT * self._noise, pe) - gain**2 * pe, 0.0))
        out = (
            np.fft.irfft((E * gain + fill * phases) * np.float32(block_gain)).astype(np.float32)
            * self._window
        )
        return prev + out[: self.block], out[self.block :]

    def _near_end(self, pe: np.ndarray, residual: np.ndarray) -> bool:
        """Whether the user talks in this block or did within `_DT_HOLD` blocks: the error stands well
        above the residual the estimate expects (and the noise), broadly and for `_DT_RUN` blocks.
        The user's voice does not follow the echo estimate; a residual does, within its leak."""
        band_pe = np.add.reduceat(pe, self._edges)
        band_r = np.add.reduceat(residual, self._edges)
        noise = np.add.reduceat(np.where(np.isfinite(self._noise), self._noise, 0.0), self._edges)
        self._near_ratios.append(band_pe / (_DT_MARGIN * band_r + _DT_NOISE * noise + _EPS))
        above = np.min(np.array(self._near_ratios), axis=0) > 1.0
        if len(self._near_ratios) == _DT_RUN and float(above[self._speech_bands].mean()) >= _DT_SHARE:
            self._near_hold = _DT_HOLD
        elif self._near_hold > 0:
            self._near_hold -= 1
        return self.user_talking

    def _leak(self) -> np.ndarray:
        return np.maximum(np.exp(self._log_leak_alone), self._leak_regression)

    def _regress(self, band_pe: np.ndarray, band_b: np.ndarray) -> None:
        a = _COVARIANCE_RATE
        self._mean_e += a * (band_pe - self._mean_e)
        self._mean_b += a * (band_b - self._mean_b)
        de, db = band_pe - self._mean_e, band_b - self._mean_b
        self._cov_eb += a * (de * db - self._cov_eb)
        self._var_b += a * (db * db - self._var_b)
        self._leak_regression = np.clip(self._cov_eb / (self._var_b + 1e-30), self._lo, self._hi)
