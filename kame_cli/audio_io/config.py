"""Audio settings, as read from a profile's `[audio]` table (CLI flags override them).

Each field declares its own type, choices and documentation (see `kame_cli.settings`).
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field

from kame_cli.settings import SETTINGS

AecMode = Literal["auto", "on", "off"]
AecEngine = Literal["webrtc", "linear"]
AEC_MODES: tuple[str, ...] = typing.get_args(AecMode)
AEC_ENGINES: tuple[str, ...] = typing.get_args(AecEngine)


@dataclass(frozen=True, slots=True)
class AudioConfig:
    """Echo cancellation and the microphone's clean-up (WebRTC audio processing)."""

    __pydantic_config__ = SETTINGS

    aec: AecMode = "auto"
    """`auto`: on when the assistant plays through a speaker while the microphone listens (or a
    recorded `--echo-reference` is replayed); off for file input, `--no-speaker` and headphones."""
    aec_engine: AecEngine = "linear"
    """`linear`: kame's frequency-domain Kalman filter, which keeps the user's words while the
    assistant speaks (the microphone is muted only while the filter first converges); `webrtc`:
    WebRTC's AEC3, whose suppressor also takes most of a user who talks over the assistant for echo,
    but which copes with a speaker that distorts (figures in docs/echo.md)."""
    residual_suppression: bool = False
    """With `linear`: the plain residual-echo suppressor (a gain per frequency bin) in place of the
    default one, which steps back while the user talks, and the mute cut to the assistant's first 2 s
    of voice. For a speaker that distorts (a small speaker played loud): it takes the echo the filter
    cannot model further down, but it also takes part of a user who talks over the assistant, and on
    a clean speaker it lets words of echo through that the default does not (figures in docs/echo.md)."""
    barge_in_duck_db: Annotated[float, Field(ge=0, le=40)] = 18.0
    """With the canceller on a live speaker: how far the assistant is turned down while the user talks
    over it (0: not at all). Its echo, and what the canceller leaves of it, drop by as much, and the
    STT hears the user's words (figures in docs/echo.md)."""
    noise_suppression: bool = False
    """WebRTC's noise suppressor on the microphone, with the canceller (off: it can blur speech for STT)."""
    high_pass: bool = True
    """WebRTC's high-pass filter (removes DC and rumble below ~80 Hz), with the canceller."""
