"""Barge-in ducking: the assistant's playback turned down while the user talks over it.

A user who talks over the assistant is heard through the echo canceller's residual: what the filter
leaves of the assistant's echo. In rooms with long reverberation or a speaker that distorts, that
residual stands only ~10 dB under the user, and the STT loses about twice the words it loses with the
user alone (docs/benchmarks.md). Turning the assistant down by `depth_db` while the user talks takes
the echo, and with it the residual, down by as much (a speaker driven into clipping distorts less,
too): that is what a voice assistant does when it is interrupted, and what a person does when the
other starts to talk. The echo canceller's reference is the block as played, ducked, so the filter
sees the change as the far end's, not the room's.

Whether the user talks is the echo canceller's verdict (`EchoCanceller.user_talking`, written on the
microphone's thread, read here on the speaker's): it holds half a second after the user's last
syllable, and the gain comes back over `release_s` after that.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

_ATTACK_S = 0.03
"""How long the gain takes to go down: fast (the user's first words), but no click."""
_RELEASE_S = 0.3
"""...and to come back: the assistant returns smoothly after the user's last syllable."""


class BargeInDuck:
    """Ramps the playback's gain between 1 and `depth_db` below it, following `user_talking()`;
    `apply` runs on the speaker's callback thread, in place, and never blocks."""

    def __init__(
        self,
        depth_db: float,
        user_talking: Callable[[], bool],
        *,
        attack_s: float = _ATTACK_S,
        release_s: float = _RELEASE_S,
    ) -> None:
        if depth_db < 0:
            raise ValueError(f"ducking depth must be >= 0 dB, not {depth_db}")
        self.depth_db = depth_db
        self._user_talking = user_talking
        self._attack_s = attack_s
        self._release_s = release_s
        self.gain_db = 0.0
        """The gain at the end of the last block (0: not ducked, -depth_db: fully ducked)."""
        self.ducked_s = 0.0
        """Seconds played with any ducking (for the bench and tests)."""

    def apply(self, block: np.ndarray, rate: int) -> None:
        """Scales `block` (mono, at `rate`) by the ramping gain."""
        n = block.shape[0]
        if n == 0:
            return
        target = -self.depth_db if self._user_talking() else 0.0
        start = self.gain_db
        if start == target:
            # Steady, ducked or not: one gain for the whole block, no per-sample ramp built.
            if target:
                block *= np.float32(10 ** (target / 20))
                self.ducked_s += n / rate
            return
        ramp_s = self._attack_s if target < start else self._release_s
        # dB per sample: the whole depth over the ramp's time.
        step = self.depth_db / max(ramp_s * rate, 1.0)
        k = np.arange(1, n + 1, dtype=np.float32)
        if target < start:
            gains_db = np.maximum(start - step * k, target)
        else:
            gains_db = np.minimum(start + step * k, target)
        block *= np.power(np.float32(10.0), gains_db / np.float32(20.0)).astype(np.float32)
        self.gain_db = float(gains_db[-1])
        self.ducked_s += n / rate
