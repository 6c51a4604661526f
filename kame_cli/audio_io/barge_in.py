"""Whether the user talks over the assistant: Silero VAD on the echo canceller's output.

Barge-in ducking (`ducking.py`) needs a verdict that is quick when the user starts and seldom wrong
while the assistant talks alone. The canceller's own double-talk detector (the error against its
residual estimate, `residual_echo.py`) is neither in a room where the residual stands near the
user's level: over the wide tuning rooms (seeds 100-124) it flagged 45 % of the user's blocks and
18 % of the blocks of echo alone, and with its hold it would have ducked the assistant most of the
time. A speech detector trained on voices tells a voice from the residual's fragments far better:
the same VAD the STT runs (faster-whisper's bundled Silero model), on the cleaned microphone,
flagged 81 % of the user's 32 ms windows and 0.7 % of those of echo alone there (3 of 5 windows at
probability 0.5, and loud enough: `_FLOOR_DBFS`): about two false starts a minute of the assistant's
voice in those rooms, one in the classic ones. It is what Pipecat and LiveKit's agents detect an
interruption with, too.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from kame_cli.audio_io.resampling import StreamResampler
from kame_cli.clock import SAMPLE_RATE

_THRESHOLD = 0.5
"""A window's speech probability at or above this counts as voice."""
_VOTES = 3
_WINDOWS = 5
"""...and voice in `_VOTES` of the last `_WINDOWS` (160 ms) is the user talking: a single window of
residual that reads as voice does not duck the assistant."""
_SURE = 0.9
"""...as is a single window this likely to be voice (a loud onset: 30 ms sooner, no more false starts
over the wide tuning rooms)."""
_FLOOR_DBFS = -45.0
"""A window quieter than this (RMS; 19 dB under the user's voice in `kame bench echo`) is not the user
talking over the assistant: the VAD's verdict there is not counted. Over the classic tuning rooms
(no fan to mask it) the faint residual of a filter cancelling 35 dB read as voice in 3.4 % of the
windows where the assistant talked alone, 4.9 false starts a minute; with this, 0.3 % and 1.0, for
as many of the user's windows (96 %); in the wide rooms it changes nothing. (The output's power
against the microphone's instead, at -12 dB, also cut them, but missed users under a loud echo:
wide tuning rooms 37.8 % WER in double talk against 34.5 %.)"""
_HOLD_S = 0.5
"""The verdict holds this long after the last vote: through the gaps between the user's words."""


class BargeInDetector:
    """Fed the echo canceller's output frames (24 kHz) on the microphone's thread; `user_talking` may be
    read from any thread (the speaker's, for ducking)."""

    def __init__(self) -> None:
        from kame_cli.backends.stt.audio import VAD_WINDOW, WHISPER_RATE, StreamingVad

        self._vad = StreamingVad()
        self._resampler = StreamResampler(SAMPLE_RATE, WHISPER_RATE)
        self._recent: deque[bool] = deque(maxlen=_WINDOWS)
        self._hold_windows = round(_HOLD_S * WHISPER_RATE / VAD_WINDOW)
        self._hold = 0
        self._voice_hold = 0
        self._window = VAD_WINDOW
        self._rate = WHISPER_RATE
        self._floor = VAD_WINDOW * 10 ** (_FLOOR_DBFS / 10)
        self._pending: np.ndarray = np.zeros(0, dtype=np.float32)
        """Resampled output the VAD has not made a window of yet (it keeps the same)."""
        self._windows = 0
        self._voice_since = 0
        """The window the current run of `voice_heard` began with (`_windows` counts them all)."""

    @property
    def user_talking(self) -> bool:
        return self._hold > 0

    @property
    def voice_heard(self) -> bool:
        """A single loud window read as voice within the last `_HOLD_S`: quicker than `user_talking`
        and more often wrong. The residual-echo suppressor needs it to step back for the user
        (`residual_echo.py`); its own detector alone mistook echo for them far more often."""
        return self._voice_hold > 0

    def voice_began_s(self) -> float:
        """How long before the end of the last frame pushed the window that began the current run of
        `voice_heard` started (0.0 while none is heard)."""
        if not self.voice_heard:
            return 0.0
        samples = (self._windows - self._voice_since) * self._window + self._pending.shape[0]
        return samples / self._rate

    def push(self, frame: np.ndarray) -> None:
        """One frame of the cleaned microphone."""
        audio = np.concatenate([self._pending, self._resampler.process(frame)])
        whole = audio.shape[0] // self._window * self._window
        self._pending = audio[whole:]
        windows = audio[:whole].reshape(-1, self._window).astype(np.float64)
        loud = (windows * windows).sum(axis=1) >= self._floor
        for probability, heard in zip(self._vad.push(audio[:whole]), loud, strict=True):
            voice = bool(heard and probability >= _THRESHOLD)
            self._recent.append(voice)
            if voice:
                if self._voice_hold == 0:
                    self._voice_since = self._windows
                self._voice_hold = self._hold_windows
            elif self._voice_hold > 0:
                self._voice_hold -= 1
            if sum(self._recent) >= _VOTES or (heard and probability >= _SURE):
                self._hold = self._hold_windows
            elif self._hold > 0:
                self._hold -= 1
            self._windows += 1
