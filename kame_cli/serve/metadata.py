"""What kame's own clients get as metadata (kind 4 JSON), as typed values both ways.

Five shapes, told apart by `type`: a session event (`kame_cli.events`, its log record: the same
JSON line `events.jsonl` holds), `Output` (step `index` of the voice was produced at server
monotonic time `produced`, sent right after that step's audio), `Queue` (the client's place while
it waits for the front-end), `SessionTime` (the session clock, once, after the handshake) and
`TokenPieces` (the front-end's text pieces, once, after that).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kame_cli.events import Event


@dataclass(frozen=True, slots=True)
class OutputMark:
    """The voice's step `index` was produced at `produced` (the server's `time.monotonic()`)."""

    index: int
    produced: float


@dataclass(frozen=True, slots=True)
class QueuePlace:
    """The client waits for the front-end; `place` 1 is next."""

    place: int


@dataclass(frozen=True, slots=True)
class SessionTime:
    """The server's session clock read `t` as it sent this (right after the handshake): a client puts
    its own events on the same clock, so that its log reads as one session."""

    t: float


@dataclass(frozen=True, slots=True)
class TokenPieces:
    """The front-end's text pieces by token id, and its oracle start token: what the client's panel
    needs to show the oracle's answer as the voice takes it in. Sent once, after `SessionTime`."""

    pieces: tuple[str, ...]
    start_id: int


Info = Event | OutputMark | QueuePlace | SessionTime | TokenPieces


def to_json(info: Info) -> dict[str, Any]:
    if isinstance(info, OutputMark):
        return {"type": "Output", "index": info.index, "produced": info.produced}
    if isinstance(info, QueuePlace):
        return {"type": "Queue", "place": info.place}
    if isinstance(info, SessionTime):
        return {"type": "SessionTime", "t": info.t}
    if isinstance(info, TokenPieces):
        return {"type": "TokenPieces", "pieces": list(info.pieces), "start_id": info.start_id}
    from kame_cli.session.log import event_record

    return event_record(info)


def from_json(data: dict[str, Any]) -> Info | None:
    """The value a metadata object carries; None for a shape this version does not know."""
    kind = data.get("type")
    try:
        if kind == "Output":
            return OutputMark(int(data["index"]), float(data["produced"]))
        if kind == "Queue":
            return QueuePlace(int(data["place"]))
        if kind == "SessionTime":
            return SessionTime(float(data["t"]))
        if kind == "TokenPieces":
            return TokenPieces(tuple(str(p) for p in data["pieces"]), int(data["start_id"]))
        from kame_cli.session.logfile import decode_record

        return decode_record(data)
    except (KeyError, TypeError, ValueError):
        return None
