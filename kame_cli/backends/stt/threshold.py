"""Silero VAD thresholds that follow the channel's speech level.

Silero reads clear wide-band speech at ~0.97, but the same words through a phone's 300-3400 Hz
band and GSM at 0.4-0.8 (a whole clip's median as low as 0.36): with the fixed threshold of 0.5
(0.35 to stay in speech) a turn closes in the middle of a sentence, words between the two turns
are in neither, and turns open late. Scaling both thresholds by the speech level this stream's
turns actually read keeps them where they are on clear speech and lowers them on a phone line.
"""

from __future__ import annotations

from collections import deque
from statistics import median

SILERO_HYSTERESIS = 0.15
"""Silero's `get_speech_timestamps` stays in speech down to `threshold - 0.15`."""
CLEAR_SPEECH_LEVEL = 0.9
"""The median speech probability at or above which the thresholds are the configured ones:
clean and babble-noisy speech read 0.93-0.98."""
MIN_SCALE = 0.3
"""Lowest scale of the thresholds (0.15 and 0.105 for the default 0.5): silence through the
telephone channel reads below 0.05, and what reads lower than this is not speech a user meant."""
LEVEL_WINDOWS = 64
"""Speech windows (32 ms each, ~2 s) the level is the median of."""
MIN_LEVEL_WINDOWS = 8
"""Speech windows heard before the level counts (a quarter second)."""


class ChannelThresholds:
    """The onset and stay-in-speech thresholds, scaled to the median probability of the speech
    windows of the current stream's turns (when `follow` is set); one thread owns it."""

    def __init__(self, threshold: float, *, follow: bool = True) -> None:
        self._base = threshold
        self._base_neg = max(threshold - SILERO_HYSTERESIS, 0.01)
        self._follow = follow
        self._levels: deque[float] = deque(maxlen=LEVEL_WINDOWS)
        self._scale = 1.0

    def reset(self) -> None:
        """A new stream: perhaps another caller on another line."""
        self._levels.clear()
        self._scale = 1.0

    @property
    def threshold(self) -> float:
        """Probability at or above which a window opens a turn, or breaks a silence in one."""
        return self._base * self._scale

    @property
    def neg_threshold(self) -> float:
        """Probability below which a window in a turn is silence."""
        return self._base_neg * self._scale

    @property
    def lowered(self) -> bool:
        """Whether this stream's speech has read below clear speech, so the thresholds are lower."""
        return self._scale < 1.0

    def heard_in_turn(self, prob: float) -> None:
        """A window inside a turn: if it reads as speech, it counts toward the level."""
        if not self._follow or prob < self.neg_threshold:
            return
        self._levels.append(prob)
        if len(self._levels) >= MIN_LEVEL_WINDOWS:
            level = median(self._levels)
            self._scale = max(MIN_SCALE, min(1.0, level / CLEAR_SPEECH_LEVEL))
