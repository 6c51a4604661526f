"""Audio settings, as read from a profile's `[audio]` table (CLI flags override them).

Range checks live in each field's metadata (`choices`), so the profile loader reports the file and
key at fault without knowing this class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

AEC_MODES = ("auto", "on", "off")
AEC_ENGINES = ("webrtc", "linear")

AecMode = Literal["auto", "on", "off"]


@dataclass(frozen=True, slots=True)
class AudioConfig:
    """Echo cancellation and the microphone's clean-up (WebRTC audio processing)."""

    aec: AecMode = field(default="auto", metadata={"choices": AEC_MODES})
    """`auto`: on when the assistant plays through a speaker while the microphone listens (or a
    recorded `--echo-reference` is replayed); off for file input, `--no-speaker` and headphones."""
    aec_engine: str = field(default="linear", metadata={"choices": AEC_ENGINES})
    """`linear`: kame's frequency-domain Kalman filter, which keeps the user's words while the
    assistant speaks (the microphone is muted only while the filter first converges); `webrtc`:
    WebRTC's AEC3, whose suppressor also takes most of a user who talks over the assistant for echo,
    but which copes with a speaker that distorts (figures in the README's echo section)."""
    noise_suppression: bool = False
    """WebRTC's noise suppressor on the microphone, with the canceller (off: it can blur speech for STT)."""
    high_pass: bool = True
    """WebRTC's high-pass filter (removes DC and rumble below ~80 Hz), with the canceller."""
