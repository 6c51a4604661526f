"""kame's own echo canceller (`[audio] aec_engine = "linear"`): an adaptive filter, a mute until it has
converged, and optionally a residual-echo suppressor.

WebRTC's AEC3 removes echo well, but its suppressor treats the user talking over the assistant
(double talk) as echo and cuts most of the user's words with it. This canceller keeps the two apart:

- A partitioned-block frequency-domain Kalman filter (overlap-save; the state-space FDAF of Enzner &
  Vary, "Frequency-domain adaptive Kalman filter for acoustic echo control in hands-free telephones",
  Signal Processing 2006, with the echo path cut into partitions) models the echo path from the far
  end (what the speaker played) to the microphone and subtracts its estimate: a linear operation, so
  the user's voice passes through it untouched. Each bin of each partition carries the variance of
  its coefficient's error; the Kalman gain weighs that uncertainty against the error's power, so the
  filter takes big steps while it knows little (15-19 dB of cancellation after the assistant's first
  5 s of speech, 25-30 dB after 10 s; the normalized-LMS filter it replaces: 10-15 and 15-18 dB)
  and small ones once it has converged or while the user talks (their voice is in the error's
  power): no separate double-talk detector.
- Ahead of the filter, a model of the loudspeaker's saturation (`loudspeaker_model.py`: an odd,
  piecewise-linear curve fitted by least squares on the echo of its basis signals through the
  filter) turns the far end into what a speaker driven into clipping really plays: a linear filter
  leaves 10-18 dB of such an echo whatever it learns. The curve is used only where it explains part
  of what the filter leaves; on a speaker that does not distort it stays linear.
- Until the filter cancels the echo by ~18 dB in a good share of the blocks (typically within the
  assistant's first ~4-8 s of voice), the microphone is muted while the assistant speaks, as AEC3
  does at first: speech recognizers normalize the level, and the echo of a half-converged filter
  still reads as words. Even at 18 dB it does when the mute opens mid-utterance (the residual, bare
  on a silenced background, came out as "thank you very much" in `kame bench echo`): the mute then
  holds to the assistant's next pause unless the user talks (the error outgrows the echo estimate).
  At a pause it opens from 15 dB (12 dB at the end of a turn): nothing is laid bare there. After
  10 s of the assistant's voice it opens regardless, and from 3 s on it opens for as long as the
  residual-echo suppressor hears the user talking (their words over a residual, rather than none).
- Once the mute has opened, a residual-echo suppressor (`residual_echo.py`, `double_talk=True`) takes
  down what the filter leaves in the moments of echo alone (the reverberation beyond its 400 ms, what
  the loudspeaker model does not explain), and while the user talks takes the residual off only once,
  no deeper than -6 dB, so their words keep their level: the wide tuning rooms' median ERLE 17.7 ->
  25.4 dB with the user's double talk unchanged (`double_talk_suppression=False`: the filter alone).
  Where barge-in ducking's VAD runs, "the user talks" needs it to have heard a voice too
  (`voice_heard`): 32.2 dB, the same double talk.
- With `residual_suppression` (for a loudspeaker that distorts: the filter never gets to 18 dB
  there, and the mute would hold the user down for 10 s of the assistant's voice) the mute lasts
  the assistant's first 2 s of voice, and a residual-echo suppressor (`residual_echo.py`: a gain
  per frequency bin, from the filter's own echo estimate and a learned leak) holds down what the
  filter has not learned or cannot model, passing the bins the user's voice dominates. It is off by
  default: with a clean speaker its fragments of residual on a silenced background are read as
  words where the mute's hold lets none through, and it takes part of a user who talks over the
  assistant.
- Once trusted (the mute's conditions, without the suppressor's 2 s), the filter follows a jump of
  the echo's delay that the timestamps did not report (`echo_path_jump.py` finds it; the filter's
  taps are shifted by as much), and a block whose error comes out louder than the microphone (a
  filter off the path) is muted. Convergence is judged on the error beyond the room's noise, which
  no filter removes.

The output is one block late: the mute's gain changes are cross-faded over a block (the overlap-add
of a sqrt-Hann analysis/synthesis pair at 50 %, with a gain per block, or per bin with the suppressor).
"""

from __future__ import annotations

import math
from collections import deque
from typing import NamedTuple

import numpy as np

from kame_cli.audio_io.echo_path_jump import EchoPathJump
from kame_cli.audio_io.loudspeaker_model import LoudspeakerModel
from kame_cli.audio_io.residual_echo import ResidualEchoSuppressor

_EPS = 1e-10
_TRANSITION = 0.999
"""Kalman state transition factor A, squared (per block): the echo path is taken to drift by a
(1 - A^2) share of its power per block, which keeps the filter tracking (a door, a moved head)."""
_P_INITIAL = 0.1
"""Initial variance of each coefficient's error: far above a typical coefficient's power (1e-5..1e-3
in `kame bench echo`'s rooms; the direct path's strongest reach ~1), so that the first steps are the
largest."""
_P_FLOOR = 1e-6
"""Added to the variances per block: bins the far end never excited stay ready to learn."""
_MUTE_RELEASE_DB = 18.0
"""The filter is trusted once the microphone-to-error ratio reaches this in a fifth of the recent
blocks of the assistant's voice (their top 20 %: moments of echo alone, not the user talking)."""
_PAUSE_RELEASE_DB = 15.0
"""...and at a pause of the assistant (its echo died out), this: opening there exposes no residual at
once, and the filter keeps learning through the next utterance's first words."""
_TURN_RELEASE_DB = 12.0
"""...and at a pause of `_TURN_BLOCKS` or more (the end of the assistant's turn, not a breath between
sentences), this. In rooms with long reverberation or a distorting speaker the filter often stands at
12-15 dB after the first turn: at 15 dB the mute held the user down through their words over the
second (wide tuning rooms 103, 110, 122, 124); at 12 dB no echo word came through in rooms 100-111.
Between sentences it opened on a residual that the rest of the utterance laid bare."""
_TURN_BLOCKS = 25
"""0.5 s of the assistant's silence (beyond its echo: the far end is silent over the filter's span)."""
_MUTE_WINDOW = 50
"""Blocks of the assistant's voice (1 s at 20 ms) that mute release looks at."""
_MUTE_MAX_BLOCKS = 500
"""...and after this many (10 s of the assistant's voice) the filter is trusted and the microphone opens
regardless: a path the filter cannot model (a distorting speaker) must not mute the user whenever the
assistant talks. (Trusted after 2-5 s, a filter still converging was shifted by the jump tracker.)"""
_MUTE_BLOCKS = 100
"""With the residual-echo suppressor the mute lasts at most this many blocks of the assistant's voice
(2 s): from there the suppressor holds down what the filter has not learned yet, bin by bin."""
_DIVERGED = 10 ** (1 / 10)
"""A block whose error is this much (1 dB) above the microphone is muted: the filter added echo."""
_NOISE_RISE = 10 ** (3 / 10 / 50)
"""Per block, how fast the noise estimate may rise (3 dB a second) above the quietest block."""
_NOISE_MASK = 0.1
"""Echo left 10 dB under the noise counts as cancelled."""
_USER_OPENS_AFTER = 150
"""Blocks of the assistant's voice (3 s), and a pause, before a user who talks opens the mute of a
filter still learning (`_user_over_learning_filter`)."""
_USER_OPENS_INTO = 50
"""...and blocks (1 s) into the assistant's utterance."""
_UNDO_BLOCKS = 50
"""A shift the search reverses within this many blocks (1 s) restores the filter from before it."""
_NEAR_HOLD = 0.8
"""Per block, how slowly the near end's power estimate (the Kalman gain's noise term) lets go of a
peak: the step stays small through the short dips between the user's syllables."""


class _Shift(NamedTuple):
    """A shift of the filter, kept while the jump search may still take it back."""

    lag: int
    block: int
    """The block it was made at (`LinearEchoCanceller._blocks`)."""
    filter: np.ndarray
    variances: np.ndarray
    """The filter and its Kalman variances from before it."""


class LinearEchoCanceller:
    """Adaptive filter, a mute until it has converged (or a short one and a residual-echo suppressor),
    on blocks of `block` samples; one thread owns it.

    Single precision throughout (as Speex's MDF): the filter's accuracy is bounded by the room, not
    by float32, and the arrays then stay in cache, which makes a block ~10x cheaper on a small CPU.
    `mu_max` bounds the share of a bin's error the filter corrects in one block; `suppression_floor_db`
    is the mute's gain (deep: a speech recognizer hears echo 40 dB down as words);
    `residual_suppression`: the 2 s mute and the suppressor instead of the mute until convergence;
    `loudspeaker_model`: the saturation curve ahead of the filter (off: the filter sees the far end);
    `double_talk_suppression` (without `residual_suppression`): the suppressor after the mute until
    convergence, gentle while the user talks (`ResidualEchoSuppressor(double_talk=True)`).
    """

    def __init__(
        self,
        block: int = 480,
        partitions: int = 20,
        mu_max: float = 1.0,
        suppression_floor_db: float = -70.0,
        far_active_dbfs: float = -50.0,
        rate: int = 24_000,
        residual_suppression: bool = False,
        loudspeaker_model: bool = True,
        double_talk_suppression: bool = True,
    ) -> None:
        self.block = block
        self.partitions = partitions
        n = 2 * block
        bins = block + 1
        self._mu_max = np.float32(mu_max)
        self._floor = np.float32(10 ** (suppression_floor_db / 20))
        # Parseval: the sum of |rfft(x)|^2 over the bins is about n/2 times the sum of x^2.
        self._far_active = 10 ** (far_active_dbfs / 10) * n * block
        self._phi_floor = np.float32(1e-6 * self._far_active / bins)
        self._near_active = 1e-6 * block  # -60 dBFS: a block with echo (or voice) in it
        self._far_prev: np.ndarray = np.zeros(block, dtype=np.float32)
        self._zeros = np.zeros(block, dtype=np.float32)
        self._X = np.zeros((partitions, bins), dtype=np.complex64)  # partition p: far block p back
        self._W = np.zeros((partitions, bins), dtype=np.complex64)  # the echo path, per partition
        self._P = np.full((partitions, bins), _P_INITIAL, dtype=np.float32)
        """The Kalman state's error variance: how far each coefficient of `_W` may still be off."""
        self._far_power: np.ndarray = np.zeros((partitions, bins), dtype=np.float32)
        """|X|^2 per partition and bin, kept as the far end's blocks shift through."""
        self._X_power: np.ndarray = self._far_power
        """The filter input's power per partition and bin: `_far_power` itself while the input is the
        far end (no loudspeaker curve in use)."""
        self._far_on = False
        self._near: np.ndarray = np.zeros(bins, dtype=np.float32)
        self._cancelled_db: deque[float] = deque(maxlen=_MUTE_WINDOW)
        self._far_blocks = 0
        self._silent_blocks = 0
        """Blocks since the far end last counted as speaking."""
        self._utterance_blocks = 0
        """Blocks since the far end last came on: how far into the assistant's utterance this is."""
        self._converged = False
        """The filter cancels well enough: the mute ends at the assistant's next pause (or the user)."""
        self._adapted = False
        # The mute's cross-fade: the two halves of a Hann window (a sqrt-Hann analysis/synthesis pair
        # at 50 % overlap with one gain per block), which sum to 1.
        hann = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)).astype(np.float32)
        self._fade_in, self._fade_out = hann[:block], hann[block:]
        self._e_prev: np.ndarray = np.zeros(block, dtype=np.float32)
        self._gain_prev = np.float32(1.0)
        self._noise = math.inf
        """The microphone's quietest recent block power: the room's noise (minimum statistics)."""
        self._short_mute = residual_suppression
        """The plain suppressor's 2 s mute, not the mute until the filter has converged."""
        self._suppressor: ResidualEchoSuppressor | None = None
        if residual_suppression:
            self._suppressor = ResidualEchoSuppressor(block)
        elif double_talk_suppression:
            # After the mute: the residual down in echo alone, gently while the user talks.
            self._suppressor = ResidualEchoSuppressor(block, double_talk=True)
        self._jump = EchoPathJump(block, rate)
        self._speaker = LoudspeakerModel(block, partitions) if loudspeaker_model else None
        self._U: np.ndarray = self._X
        """The filter's input spectra: the far end's, through the loudspeaker model if there is one."""
        self.shifts: list[int] = []
        """The delay jumps the filter was shifted by (samples), in order."""
        self._blocks = 0
        self._last_shift: _Shift | None = None
        self.ducked_db = 0.0
        """How far the assistant's playback is turned down now (barge-in ducking, `ducking.py`): its
        voice still counts as speaking that much lower. Otherwise a quiet stretch of it, ducked, read
        as a pause, which restarted the utterance and brought the mute of a filter still learning
        back over the user (wide room 723: 1 s of their words)."""
        self.voice_heard: bool | None = None
        """A speech detector's verdict (`barge_in.py`), or None where none runs: the residual-echo
        suppressor steps back for the user only where it also hears a voice. That detector must hear
        `ungated`, not the output: the deeper suppression it gates would hide the user from it."""
        self.ungated: np.ndarray = np.zeros(block, dtype=np.float32)
        """The last block as it would be had the suppressor not waited for `voice_heard`."""
        self.gentle: np.ndarray = np.zeros(block, dtype=np.float32)
        """The last block as it would be had the user been talking (the suppressor's gentle gain
        throughout, with `voice_heard` set): what the STT hears over the user's onset once it is sure."""

    @property
    def nonlinear_coefficients(self) -> np.ndarray | None:
        """The loudspeaker model's slope changes at its knots (None without the model)."""
        return None if self._speaker is None else self._speaker.coefficients

    @property
    def adapted(self) -> bool:
        """The filter has learned the echo path well enough to be trusted (the mute is off)."""
        return self._adapted

    def process(self, near: np.ndarray, far: np.ndarray) -> np.ndarray:
        """One block: `near` (microphone) and `far` (what the speaker played over the same time, or
        a little earlier: the echo must come after it). Returns the cleaned block, one block late."""
        b = self.block
        self._blocks += 1
        d = np.asarray(near, dtype=np.float32)
        x = np.concatenate([self._far_prev, np.asarray(far, dtype=np.float32)])
        self._far_prev = x[b:]
        self._X[1:] = self._X[:-1]
        self._X[0] = np.fft.rfft(x)
        self._far_power[1:] = self._far_power[:-1]
        self._far_power[0] = self._X[0].real ** 2 + self._X[0].imag ** 2
        if self._speaker is not None:
            self._speaker.push(x)
            self._U = self._speaker.input_spectra(self._X)
        # With a curve in use, every partition's input is new (a refitted curve changes them all).
        self._X_power = self._far_power if self._U is self._X else self._U.real**2 + self._U.imag**2
        y = np.fft.irfft(np.einsum("pk,pk->k", self._W, self._U))[b:]
        e = d - y
        self._noise = min(self._noise * _NOISE_RISE, float(np.dot(d, d)))
        # Subtracting a true echo estimate, even a rough one, never makes the microphone louder; the
        # user's voice adds to both sides alike. An error above the microphone is a filter that no
        # longer fits the path (a delay jump, before it is found): its output would add echo.
        diverged = self._adapted and self._far_on and float(np.dot(e, e)) > _DIVERGED * float(np.dot(d, d))
        if self._adapted and self._far_on:
            # Only a converged filter's estimate is the echo's shape: one still learning would shift
            # by whatever its error happens to correlate with.
            lag = self._jump.push(d, y, self._noise)
            if lag is not None:
                self._shift(lag)
        else:
            # The jump search compares one unbroken stretch of the assistant's voice: a history that
            # spliced the end of one turn to the start of the next found a jump of ~85 ms at the
            # turn's onset in a room where nothing moved, and the shift cost its first taps.
            self._jump.reset()
        self._adapt(e, y)
        return self._mute(e, y, diverged)

    def _shift(self, lag: int) -> None:
        """Moves the echo path the filter models `lag` samples later (earlier if negative)."""
        last, self._last_shift = self._last_shift, None
        if last is not None and last.lag == -lag and self._blocks - last.block <= _UNDO_BLOCKS:
            # The jump it just followed was not one (the search found its way back): the filter as it
            # was, with the taps that shift pushed out of its span, rather than those taps lost.
            self._W[:], self._P[:] = last.filter, last.variances
            self._jump.reset()
            self.shifts.append(lag)
            return
        self._last_shift = _Shift(lag, self._blocks, self._W.copy(), self._P.copy())
        b = self.block
        taps = np.fft.irfft(self._W, axis=1)[:, :b].reshape(-1)
        moved = np.zeros_like(taps)
        if lag > 0:
            moved[lag:] = taps[:-lag]
        else:
            moved[:lag] = taps[-lag:]
        padded = np.zeros((self.partitions, 2 * b), dtype=np.float32)
        padded[:, :b] = moved.reshape(self.partitions, b)
        self._W[:] = np.fft.rfft(padded, axis=1)
        self._jump.reset()
        self.shifts.append(lag)

    # --- the adaptive filter ----------------------------------------------------------------------

    def _adapt(self, e: np.ndarray, y: np.ndarray) -> None:
        # "Speaking" over the filter's span: the echo of a word goes on after the word.
        far_power = float(self._X_power.sum(axis=0, dtype=np.float64).sum())
        self._far_on = far_power / self.partitions >= self._far_active * 10 ** (-self.ducked_db / 10)
        if not self._far_on:
            # The assistant's pause (its echo has died out): the mute of a converged filter ends here,
            # and one within a few dB of the bar is trusted too (see `_PAUSE_RELEASE_DB`): waiting for
            # it to converge in the next utterance would hold the mute over a user who starts softly.
            self._silent_blocks += 1
            self._utterance_blocks = 0
            bar = _TURN_RELEASE_DB if self._silent_blocks >= _TURN_BLOCKS else _PAUSE_RELEASE_DB
            if not self._adapted and (self._converged or self._cancelling_db() >= bar):
                self._adapted = True
            return  # the assistant is silent: nothing to learn the echo path from
        self._silent_blocks = 0
        self._utterance_blocks += 1
        if not self._adapted:
            self._track_convergence(e, y)
        if self.ducked_db:
            # The user talks over an echo turned down: it has little to teach, and a delay jump in the
            # meantime is found only once the echo is back. Steps taken towards the moved path would
            # then be shifted a second time with the rest of the filter (wide rooms 105 and 802: the
            # echo came back 5-7 dB less cancelled, and the STT read it: "the past day").
            return
        if self._speaker is not None:
            self._speaker.learn(self._W, self._X, e)
        E = np.fft.rfft(np.concatenate([self._zeros, e]))
        pee = E.real**2 + E.imag**2
        # Kalman gain, per partition and bin: the coefficient's error variance over the error power
        # expected from the whole filter's uncertainty plus what is not echo. That second term (the
        # near end: the user, noise) is taken as the error's own power: an over-estimate while the
        # filter is far off, which only halves the early steps, and the instant the user speaks the
        # steps shrink with it, before a smoothed estimate would have noticed (held over a few blocks).
        self._near = np.maximum(pee, _NEAR_HOLD * self._near)
        uncertain = np.einsum("pk,pk->k", self._X_power, self._P)
        # A step corrects `uncertain / den` of a bin's error: never more than `mu_max` of it.
        den = np.maximum(uncertain + self._near + self._phi_floor, uncertain / self._mu_max)
        gain = self._P / den
        self._W += (gain * E).astype(np.complex64) * np.conjugate(self._U)
        # The variances shrink by what the step has learned (half: the overlap-save error holds one
        # block of two), and grow back by the path's assumed drift and a floor.
        w_power = self._W.real**2 + self._W.imag**2
        self._P *= _TRANSITION * (1.0 - 0.5 * gain * self._X_power)
        self._P += (1.0 - _TRANSITION) * w_power + _P_FLOOR
        # The update lets each partition's taps wrap around (circular convolution): all partitions
        # are brought back to `block` causal taps every block, which keeps the large early steps of
        # the Kalman gain from building up wrapped-around taps (one FFT pair over all of them).
        taps = np.fft.irfft(self._W, axis=1)
        taps[:, self.block :] = 0.0
        self._W[:] = np.fft.rfft(taps, axis=1)

    def _track_convergence(self, e: np.ndarray, y: np.ndarray) -> None:
        """Opens the microphone (`adapted`) once the filter cancels the echo well in the moments of
        echo alone (the top fifth of the last second's microphone-to-error ratios), at the
        assistant's next pause or as soon as the user talks, whichever comes first."""
        self._far_blocks += 1
        d = e + y
        sdd = float(np.dot(d, d))
        see = float(np.dot(e, e))
        if sdd > self._near_active:
            # What the filter leaves of the echo: the error beyond the room's noise. Echo left below
            # the noise is masked by it (no recognizer reads it), and noise must not hold the mute.
            echo_left = max(see - self._noise, _NOISE_MASK * self._noise)
            self._cancelled_db.append(10.0 * math.log10(sdd / (echo_left + _EPS)))
        if self._converged:
            # Opening the microphone in the middle of the assistant's words lays the residual of a
            # filter that has only just converged (~18 dB down) bare on a muted background, where
            # the recognizer reads it as words ("thank you very much"). So the mute holds to the
            # end of the utterance, unless the error outgrows the echo estimate itself: what the echo
            # path does not explain there (the user talking over the assistant) must not be cut.
            if sdd > self._near_active and see >= float(np.dot(y, y)):
                self._adapted = True
        else:
            self._converged = self._cancelling_db() >= _MUTE_RELEASE_DB
        if self._far_blocks >= _MUTE_MAX_BLOCKS:
            self._adapted = True

    def _cancelling_db(self) -> float:
        """The filter's cancellation in the moments of echo alone: the 80th percentile of the recent
        microphone-to-error ratios (-inf until there are enough of them)."""
        if len(self._cancelled_db) < _MUTE_WINDOW // 2:
            return -math.inf
        return float(np.percentile(self._cancelled_db, 80))

    # --- the mute -----------------------------------------------------------------------------------

    def _user_over_learning_filter(self) -> bool:
        """The user talks over a filter that has not converged yet (the suppressor's double-talk
        detector, from the previous block): their words come through, over the residual of a filter
        still learning and gently suppressed, rather than none. In held-out wide rooms 717, 719 and
        723 the filter stood at 8-11 dB when the user talked over the assistant's second turn, and the
        mute held through all 42 of their words.

        Only once the assistant has paused after 3 s of voice, and 1 s into its next utterance. In its
        first utterance the filter and the suppressor's residual estimate are still moving fast, and
        the detector took echo alone for the user (its first 50 blocks in every room; after 3 s, in 37
        of 67 tuning and held-out rooms, and in classic room 863 the STT then read the residual as
        "thank you"); after the first pause, in one room, 0.5 s. An utterance's onset set it off too."""
        # While the filter learns both counters grow together; a pause restarts only the utterance's.
        paused_once = self._utterance_blocks < self._far_blocks
        return (
            paused_once
            and self._suppressor is not None
            and self._suppressor.user_talking
            and self._far_blocks >= _USER_OPENS_AFTER
            and self._utterance_blocks >= _USER_OPENS_INTO
        )

    def _mute(self, e: np.ndarray, y: np.ndarray, diverged: bool = False) -> np.ndarray:
        """The previous block of the error, at the mute's gain: cross-faded from the last block's."""
        # Until the filter has converged, much of the error is still echo: the microphone is muted
        # while the assistant speaks (and its echo lasts), as AEC3 does at first; and for a block the
        # filter made louder.
        learning = not self._adapted and (not self._short_mute or self._far_blocks < _MUTE_BLOCKS)
        muted = (learning and self._far_on and not self._user_over_learning_filter()) or diverged
        gain = self._floor if muted else np.float32(1.0)
        if self._suppressor is not None:
            learn = self._far_on and not diverged
            out = self._suppressor.process(e, y, float(gain), learn=learn, voice=self.voice_heard)
            self.ungated, self.gentle = self._suppressor.ungated, self._suppressor.gentle
            return out
        out = self._e_prev * (self._gain_prev * self._fade_out + gain * self._fade_in)
        self._e_prev, self._gain_prev = e, gain
        self.ungated = self.gentle = out
        return out
