"""What kame's own clients get as metadata (kind 4 JSON), as typed values both ways.

Five shapes, told apart by `type`: a session event (`kame_cli.events`, its log record: the same
JSON line `events.jsonl` holds), `Output` (step `index` of the voice was produced at server
monotonic time `produced`, sent right after that step's audio), `Queue` (the client's place while
it waits for the front-end), `SessionTime` (the session clock, once, after the handshake) and
`TokenPieces` (the front-end's text pieces, once, after that).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from kame_cli.events import Event


@dataclass(frozen=True, slots=True)
class Shape:
    """A metadata shape of kame's own (not a session event): `name` is its JSON `type`."""

    name: ClassVar[str]


@dataclass(frozen=True, slots=True)
class OutputMark(Shape):
    """The voice's step `index` was produced at `produced` (the server's `time.monotonic()`)."""

    name = "Output"
    index: int
    produced: float


@dataclass(frozen=True, slots=True)
class QueuePlace(Shape):
    """The client waits for the front-end; `place` 1 is next."""

    name = "Queue"
    place: int


@dataclass(frozen=True, slots=True)
class SessionTime(Shape):
    """The server's session clock read `t` as it sent this (right after the handshake): a client puts
    its own events on the same clock, so that its log reads as one session."""

    name = "SessionTime"
    t: float


@dataclass(frozen=True, slots=True)
class TokenPieces(Shape):
    """The front-end's text pieces by token id, and its oracle start token: what the client's panel
    needs to show the oracle's answer as the voice takes it in. Sent once, after `SessionTime`."""

    name = "TokenPieces"
    pieces: tuple[str, ...]
    start_id: int


Info = Event | OutputMark | QueuePlace | SessionTime | TokenPieces
_SHAPES: dict[str, type] = {cls.name: cls for cls in (OutputMark, QueuePlace, SessionTime, TokenPieces)}


def to_json(info: Info) -> dict[str, Any]:
    """The JSON object: the type's name and its fields, as the session log writes an event."""
    from kame_cli.session.logfile import event_record

    return event_record(info, info.name if isinstance(info, Shape) else None)


def from_json(data: dict[str, Any]) -> Info | None:
    """The value a metadata object carries; None for a shape this version does not know, or a
    known one with a field missing or of the wrong type."""
    from kame_cli.session.logfile import EVENT_TYPES, decode_record

    try:
        return decode_record(data, {**EVENT_TYPES, **_SHAPES})
    except ValueError:
        return None
