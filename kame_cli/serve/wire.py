"""What `kame serve`'s supervisor and its front-end host process say to each other (pickled, typed).

The host loads the model once and runs one session's `FrontendLoop` at a time; every message about
a session carries its id, so a late message of an ended session is never taken for the next one's.
The session layer's own messages (`Ready`, `Stop`, `Failure`, `Closed`) are reused as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kame_cli.engine.config import FrontendConfig


@dataclass(frozen=True, slots=True)
class HostSetup:
    """The front-end to load and how sessions are paced."""

    frontend: FrontendConfig
    jitter_frames: int
    """Client frames held for the pacer beyond this are dropped, the oldest first (and counted)."""
    max_sessions: int = 1
    """Above 1: sessions are rows of one batched front-end (`engine.batch_loop`)."""


@dataclass(frozen=True, slots=True)
class SessionMessage:
    """A message about one session, either way: `session` is its id."""

    session: int


@dataclass(frozen=True, slots=True)
class StartSession(SessionMessage):
    """Reset the front-end's state and step a new session from now on, on its clock."""

    clock_origin: float


@dataclass(frozen=True, slots=True)
class SessionStarted(SessionMessage):
    """The session's loop warmed up and runs; its first step is on the next tick."""


@dataclass(frozen=True, slots=True)
class ClientFrame(SessionMessage):
    """One 80 ms frame of a client's voice (float32 samples, 24 kHz)."""

    pcm: bytes


@dataclass(frozen=True, slots=True)
class OutputFrame(SessionMessage):
    """The voice's output for step `index` of a session, and when the loop produced it (monotonic)."""

    index: int
    pcm: bytes
    produced: float


@dataclass(frozen=True, slots=True)
class SessionEvent(SessionMessage):
    """One of the session's typed events (`kame_cli.events`) or oracle commands, tagged with its id."""

    event: Any


@dataclass(frozen=True, slots=True)
class EndSession(SessionMessage):
    """The client left (or the server stops): stop stepping that session."""


@dataclass(frozen=True, slots=True)
class SessionEnded(SessionMessage):
    """The session's loop stopped; its counts."""

    stats: dict[str, int] = field(default_factory=dict)
