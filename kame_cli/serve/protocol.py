"""moshi's WebSocket protocol: every message kind as one typed definition, encoded and decoded here.

Each binary WebSocket message starts with one byte, its kind; the rest is the payload. The table
(docs/serve.md has it with the bytes) follows moshi's `rust/protocol.md`, its Python server
(`moshi/server.py`: handshake `b"\\x00"`, audio `b"\\x01" + ogg`, text `b"\\x02" + utf-8`) and its
web client (`client/src/protocol/encoder.ts`). Writers and readers both go through `encode` and
`decode`, so a kind is never matched by a bare number anywhere else.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any, ClassVar

from kame_cli.errors import KameError


class Kind(enum.IntEnum):
    """The first byte of a message."""

    HANDSHAKE = 0
    AUDIO = 1
    TEXT = 2
    CONTROL = 3
    METADATA = 4
    ERROR = 5
    PING = 6


class ControlAction(enum.IntEnum):
    """The one payload byte of a control message (moshi: unused in full streaming)."""

    START = 0
    END_TURN = 1
    PAUSE = 2
    RESTART = 3


class ProtocolError(KameError):
    """A message that is not moshi's protocol: empty, an unknown kind, or a bad payload."""

    exit_code = 1


@dataclass(frozen=True, slots=True)
class Handshake:
    """Server to client when the session is ready; moshi's Python server sends the kind byte alone."""

    kind: ClassVar[Kind] = Kind.HANDSHAKE
    protocol_version: int = 0
    model_version: int = 0
    with_versions: bool = False
    """Add the two little-endian u32 fields (`rust/protocol.md`; the Rust server sends them)."""


@dataclass(frozen=True, slots=True)
class Audio:
    """Ogg pages of Opus audio, 24 kHz mono, both ways (`sphn.OpusStreamWriter/Reader`)."""

    kind: ClassVar[Kind] = Kind.AUDIO
    ogg: bytes


@dataclass(frozen=True, slots=True)
class Text:
    """A piece of what the voice says (UTF-8), server to client."""

    kind: ClassVar[Kind] = Kind.TEXT
    text: str


@dataclass(frozen=True, slots=True)
class Control:
    """A control byte (start, end of turn, pause, restart)."""

    kind: ClassVar[Kind] = Kind.CONTROL
    action: ControlAction


@dataclass(frozen=True, slots=True)
class Metadata:
    """A JSON object (kame sends these only to clients that ask for them)."""

    kind: ClassVar[Kind] = Kind.METADATA
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Error:
    """A one-line error description (UTF-8), server to client, before the server closes."""

    kind: ClassVar[Kind] = Kind.ERROR
    message: str


@dataclass(frozen=True, slots=True)
class Ping:
    """No payload."""

    kind: ClassVar[Kind] = Kind.PING


Message = Handshake | Audio | Text | Control | Metadata | Error | Ping


def kind_of(message: Message) -> Kind:
    """The kind byte `message` is sent with."""
    return message.kind


def encode(message: Message) -> bytes:
    """The bytes of one WebSocket binary message."""
    kind = bytes([kind_of(message)])
    if isinstance(message, Handshake):
        if not message.with_versions:
            return kind
        versions = message.protocol_version.to_bytes(4, "little") + message.model_version.to_bytes(
            4, "little"
        )
        return kind + versions
    if isinstance(message, Audio):
        return kind + message.ogg
    if isinstance(message, Text):
        return kind + message.text.encode("utf-8")
    if isinstance(message, Control):
        return kind + bytes([message.action])
    if isinstance(message, Metadata):
        return kind + json.dumps(message.data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    if isinstance(message, Error):
        return kind + message.message.encode("utf-8")
    return kind


def decode(data: bytes) -> Message:
    """One binary message; `ProtocolError` (one line) if it is empty, of an unknown kind or malformed."""
    if not data:
        raise ProtocolError("an empty message (every message starts with its kind byte)")
    try:
        kind = Kind(data[0])
    except ValueError:
        raise ProtocolError(f"unknown message kind {data[0]} (moshi's protocol has kinds 0 to 6)") from None
    payload = data[1:]
    try:
        if kind is Kind.HANDSHAKE:
            if len(payload) >= 8:
                return Handshake(
                    int.from_bytes(payload[:4], "little"), int.from_bytes(payload[4:8], "little"), True
                )
            return Handshake()
        if kind is Kind.AUDIO:
            return Audio(bytes(payload))
        if kind is Kind.TEXT:
            return Text(payload.decode("utf-8"))
        if kind is Kind.CONTROL:
            if len(payload) != 1:
                raise ProtocolError(f"a control message carries one byte, not {len(payload)}")
            return Control(ControlAction(payload[0]))
        if kind is Kind.METADATA:
            value = json.loads(payload.decode("utf-8"))
            if not isinstance(value, dict):
                raise ProtocolError("a metadata message must hold a JSON object")
            return Metadata(value)
        if kind is Kind.ERROR:
            return Error(payload.decode("utf-8"))
        return Ping()
    except UnicodeDecodeError:
        raise ProtocolError(f"a {kind.name.lower()} message that is not UTF-8") from None
    except json.JSONDecodeError:
        raise ProtocolError("a metadata message that is not JSON") from None
    except ValueError:
        raise ProtocolError(f"a control message with an unknown action {payload[0]}") from None
