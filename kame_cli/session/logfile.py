"""The session log's codec: one event per JSON line, written by `SessionLog`, read by `read_log`.

A log folder is something users share and download, so a log read back is untrusted input: every
line must be a JSON object whose `type` names an event and whose fields have that event's types
(numbers finite); anything else is refused with one line naming the file and the line. Two things
are skipped, not refused: an event type this version does not know (a newer kame wrote it) and a
known event without a field it needs (an older layout), better left out than half-read.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import stat
import types
import typing
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from kame_cli.errors import ConfigError, printable
from kame_cli.events import BackendStatus, Event, SessionStarted, SessionStopped

__all__ = [
    "EVENT_TYPES",
    "LogFormatError",
    "decode_line",
    "decode_record",
    "encode_events",
    "event_record",
    "read_log",
]

EVENT_TYPES: dict[str, type] = {cls.__name__: cls for cls in typing.get_args(Event)}
MAX_LINE_BYTES = 1 << 20
"""No event comes near this (a whole LLM answer is a few kB): a longer line is damage, not a log."""
MAX_LOG_BYTES = 1 << 30
"""An hour of session writes about 10 MB: a log a hundred times larger is not one, and is not read."""
MAX_ABS_NUMBER = 1e12
"""Times, counts and milliseconds in a real log are far below this; beyond it a number is nonsense
that would only make a plot unreadable (or a figure millions of inches wide)."""
_FIX = "give a folder written by `kame talk --log-dir DIR`"


class LogFormatError(ConfigError):
    """A session log holds a line that is not an event of this layout (bad input: exit 2)."""


def event_record(event: Any, name: str | None = None) -> dict[str, object]:
    """The JSON object written for one event (or another flat dataclass): its type name (or `name`)
    plus its fields."""
    record: dict[str, object] = {"type": name or type(event).__name__}
    for field in dataclasses.fields(event):
        value = getattr(event, field.name)
        record[field.name] = list(value) if isinstance(value, tuple) else value
    return record


def with_session_marks(events: Iterable[Event]) -> Iterator[Event]:
    """The events with the session's start and stop made explicit: the session's own status says
    "started" when its input begins to flow and "stopped ..." last; the marks sit next to them."""
    for event in events:
        if isinstance(event, BackendStatus) and event.component == "session":
            if event.message == "started":
                yield event
                yield SessionStarted(event.t)
                continue
            if event.message.startswith("stopped"):
                yield SessionStopped(event.t, event.message)
        yield event


def encode_events(events: Iterable[Event]) -> bytes:
    """Whole JSON lines for `events` (UTF-8; non-finite numbers are never written)."""
    return "".join(json.dumps(event_record(e), ensure_ascii=False) + "\n" for e in events).encode()


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number a session writes")


def decode_line(line: str | bytes) -> Event | None:
    """The event one line describes; None for an unknown type or an older layout. ValueError (with
    a short reason) for a line that is not an event."""
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ValueError(f"not UTF-8 text (byte {err.start})") from None
    try:
        record = json.loads(line, parse_constant=_refuse_constant)
    except json.JSONDecodeError as err:
        raise ValueError(f"not JSON ({err.msg}, column {err.colno})") from None
    except RecursionError:
        raise ValueError("JSON nested too deep") from None
    return decode_record(record)


def decode_record(record: Any, types: Mapping[str, type] = EVENT_TYPES) -> Any:
    """The event (of `types`, by name) a parsed JSON value describes (a log line's, or a `kame serve`
    metadata message's); None for an unknown type or an older layout; ValueError saying why it is
    not an event."""
    if not isinstance(record, dict):
        raise ValueError(f"a JSON {type(record).__name__}, not an event object")
    name = record.get("type")
    if not isinstance(name, str):
        raise ValueError('no "type" naming the event')
    cls = types.get(name)
    if cls is None:
        return None  # a newer kame's event: skipped
    values: dict[str, Any] = {}
    for f, hint in _fields(cls):
        if f.name not in record:
            if f.default is not dataclasses.MISSING:
                continue  # a field added since that log was written: its default
            return None  # an older or different layout
        try:
            values[f.name] = _checked(record[f.name], hint)
        except ValueError as err:
            raise ValueError(f"{name}.{f.name}: {err}") from None
    return cls(**values)


@functools.cache
def _fields(cls: type) -> list[tuple[dataclasses.Field[Any], Any]]:
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls)]


def _checked(value: Any, hint: Any) -> Any:
    """`value` as a field of type `hint` holds it; ValueError saying why it cannot."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        arms = typing.get_args(hint)
        if value is None and type(None) in arms:
            return None
        (arm,) = [a for a in arms if a is not type(None)]
        return _checked(value, arm)
    if origin is Literal:
        if isinstance(value, str) and value in typing.get_args(hint):
            return value
        raise ValueError(f"{_shown(value)} is not one of {', '.join(typing.get_args(hint))}")
    if origin is tuple:
        if not isinstance(value, list):
            raise ValueError(f"{_shown(value)} is not a list")
        (item,) = typing.get_args(hint)[:1]
        return tuple(_checked(v, item) for v in value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"{_shown(value)} is not true or false")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) <= MAX_ABS_NUMBER:
            return value
        raise ValueError(f"{_shown(value)} is not a whole number in range")
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value) if abs(value) <= MAX_ABS_NUMBER else math.inf
            if math.isfinite(number):
                return number
        raise ValueError(f"{_shown(value)} is not a finite number in range")
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(f"{_shown(value)} is not a string")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("a string with a lone surrogate (\\ud800-\\udfff), not text") from None
        return value
    raise TypeError(f"no log codec for field type {hint!r}")  # a new event field type: extend _checked


def _shown(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else repr(value)
    return printable(text if len(text) <= 40 else text[:37] + "...")


def read_log(path: Path) -> list[Event]:
    """Every event of a session log, in log order, with explicit start and stop marks (an older log
    gets them from its session status). LogFormatError, one line naming the file and line, for
    anything that is not a session log."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise LogFormatError(f"{path.parent}: no {path.name} in it: {_FIX}") from None
    except OSError as err:
        raise LogFormatError(f"{path}: cannot be read ({err.strerror}): {_FIX}") from None
    if not stat.S_ISREG(info.st_mode):
        raise LogFormatError(f"{path}: not a regular file: {_FIX}")
    if info.st_size > MAX_LOG_BYTES:
        raise LogFormatError(f"{path}: {info.st_size} bytes, larger than any session's log: {_FIX}")
    try:
        # Non-blocking: a FIFO swapped in after the check must not hang the reader.
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as file:
            data = file.read()
    except OSError as err:
        raise LogFormatError(f"{path}: cannot be read ({err.strerror}): {_FIX}") from None
    events: list[Event] = []
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        if len(line) > MAX_LINE_BYTES:
            raise LogFormatError(f"{path}, line {number}: {len(line)} bytes long, not an event line: {_FIX}")
        try:
            event = decode_line(line)
        except ValueError as err:
            raise LogFormatError(f"{path}, line {number}: {err}: not a kame session log ({_FIX})") from None
        if event is not None:
            events.append(event)
    if not any(isinstance(e, SessionStarted | SessionStopped) for e in events):
        events = list(with_session_marks(events))  # written before the marks existed
    return events


def event_table() -> str:
    """The Markdown table of every event a log holds (docs/session-log.md, checked by a test)."""
    rows = ["| `type` | fields | what it says |", "|---|---|---|"]
    for name, cls in EVENT_TYPES.items():
        fields = ", ".join(
            f"`{f.name}`" + ("" if f.default is dataclasses.MISSING else "?") for f, _ in _fields(cls)
        )
        summary = " ".join((cls.__doc__ or "").split()).replace("|", "\\|")
        rows.append(f"| `{name}` | {fields} | {summary} |")
    return "\n".join(rows) + "\n"
