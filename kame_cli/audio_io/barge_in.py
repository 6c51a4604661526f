"""Whether the user talks over the assistant: Silero VAD on the echo canceller's output.

Barge-in ducking (`ducking.py`) needs a verdict that is quick when the user starts and seldom wrong
while the assistant talks alone. The canceller's own double-talk detector (the error against its
residual estimate, `residual_echo.py`) is neither in a room where the residual stands near the
user's level: over the wide tuning rooms (seeds 100-124) it flagged 45 % of the user's blocks and
18 % of the blocks of echo alone, and with its hold it would have ducked the assistant most of the
time. A speech detector trained on voices tells a voice from the residual's fragments far better:
the same VAD the STT runs (faster-whisper's bundled Silero model), on the cleaned microphone,
flagged 76 % of the user's 32 ms windows and 0.1 % of those of echo alone there (3 of 5 windows at
probability 0.5, where the output keeps enough of the microphone: `_KEPT`), under one false start a
minute of the assistant's voice. It is what Pipecat and LiveKit's agents detect an interruption
with, too.
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
_KEPT = 10 ** (-12 / 10)
"""A frame whose output holds less than this share of the microphone's power (the canceller took
12 dB or more off it) is echo the canceller took down, not the user: the VAD's verdict there is not
counted. Over the classic tuning rooms (no fan to mask it) the faint residual of a filter cancelling
35 dB read as voice in 3.4 % of the windows where the assistant talked alone, 4.9 false starts a
minute; with this, 0.2 % and 1.0 (the wide rooms: 1.9 to 0.9 a minute), for 91 % of the user's
windows in double talk against 96 % (the wide rooms: 76 % against 81 %)."""
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

    @property
    def user_talking(self) -> bool:
        return self._hold > 0

    def push(self, near: np.ndarray, out: np.ndarray) -> None:
        """One frame: the microphone (`near`) and the canceller's output for it (`out`)."""
        kept = float(np.dot(out, out)) >= _KEPT * float(np.dot(near, near))
        for probability in self._vad.push(self._resampler.process(out)):
            voice = kept and probability >= _THRESHOLD
            self._recent.append(voice)
            if sum(self._recent) >= _VOTES or (kept and probability >= _SURE):
                self._hold = self._hold_windows
            elif self._hold > 0:
                self._hold -= 1
