"""The session log's codec: what the writer writes reads back as the same typed events; a line that
is not an event is refused naming the file and line; the session's start and stop are explicit."""

from __future__ import annotations

import json
import re
import typing
from pathlib import Path

import pytest

from kame_cli.bus import EventBus
from kame_cli.events import BackendStatus, Event, SessionStarted, SessionStopped, StepTiming
from kame_cli.session.log import SessionLog
from kame_cli.session.logfile import EVENT_TYPES, LogFormatError, encode_events, read_log
from kame_cli.session.record import read_session
from tests.support.session_log import ORIGIN, session_events, write_session_log


def _log(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


GOOD = json.dumps(
    {"type": "StepTiming", "t": 1.0, "step": 0, "encode_ms": 1, "lm_ms": 2, "decode_ms": 3, "total_ms": 6}
)


def test_every_event_type_reads_back_as_written(tmp_path: Path) -> None:
    events = session_events(3.0)
    path = tmp_path / "events.jsonl"
    path.write_bytes(encode_events(events))
    back = read_log(path)
    assert [e for e in back if not isinstance(e, SessionStarted | SessionStopped)] == events
    written = {type(e) for e in back}
    assert written == set(typing.get_args(Event)), set(typing.get_args(Event)) - written


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("[1, 2, 3]", "a JSON list, not an event object"),
        ("42", "a JSON int, not an event object"),
        ('{"t": 1.0}', 'no "type" naming the event'),
        ('{"type": 7, "t": 1.0}', 'no "type" naming the event'),
        (GOOD.replace('"t": 1.0', '"t": "soon"'), 'StepTiming.t: "soon" is not a finite number'),
        (GOOD.replace('"step": 0', '"step": 0.5'), "StepTiming.step: 0.5 is not a whole number"),
        (GOOD.replace('"step": 0', '"step": true'), "StepTiming.step: true is not a whole number"),
        (GOOD.replace('"t": 1.0', '"t": NaN'), "NaN is not a number a session writes"),
        (GOOD.replace('"t": 1.0', '"t": -Infinity'), "-Infinity is not a number a session writes"),
        (GOOD.replace('"t": 1.0', '"t": 1e999'), "StepTiming.t: inf is not a finite number"),
        (GOOD.replace('"t": 1.0', '"t": 1e300'), "StepTiming.t: 1e+300 is not a finite number in range"),
        (GOOD[:40], "not JSON"),
        (
            '{"type": "BackendStatus", "t": 1, "component": "x", "state": "ok", "message": ""}',
            "BackendStatus.component",
        ),
        (
            '{"type": "OracleChunk", "t": 1, "generation": 1, "text": "a", "token_ids": [1, "2"], '
            '"first": true, "latency_ms": 1}',
            'OracleChunk.token_ids: "2" is not a whole number',
        ),
    ],
)
def test_a_line_that_is_not_an_event_is_one_line_naming_file_and_line(
    tmp_path: Path, line: str, why: str
) -> None:
    path = _log(tmp_path, [GOOD, GOOD, line, GOOD])
    with pytest.raises(LogFormatError) as caught:
        read_log(path)
    message = str(caught.value)
    assert message.startswith(f"{path}, line 3: ") and why in message, message
    assert "\n" not in message and caught.value.exit_code == 2


def test_bytes_that_are_not_utf8_and_huge_lines_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(GOOD.encode() + b"\n" + b'{"type": "\xff"}\n')
    with pytest.raises(LogFormatError, match=r"line 2: not UTF-8 text"):
        read_log(path)
    path.write_bytes(
        GOOD.encode() + b"\n" + b'{"type": "FrontendText", "text": "' + b"a" * (2 << 20) + b'"}\n'
    )
    with pytest.raises(LogFormatError, match=r"line 2: \d+ bytes long"):
        read_log(path)
    path.write_bytes(b"[" * 100_000 + b"]" * 100_000 + b"\n")
    with pytest.raises(LogFormatError, match=r"line 1: "):
        read_log(path)
    with path.open("r+b") as sparse:  # no disk used: a hole
        sparse.truncate((1 << 30) + 1)
    with pytest.raises(LogFormatError, match=r"larger than any session's log"):
        read_log(path)


def test_newer_events_and_older_layouts_are_skipped_not_refused(tmp_path: Path) -> None:
    newer = json.dumps({"type": "SomethingNew", "t": 2.0, "x": [1]})
    older = json.dumps({"type": "StepTiming", "t": 2.0, "step": 1})  # fields it needs are missing
    assert read_log(_log(tmp_path, [GOOD, newer, older])) == [StepTiming(1.0, 0, 1.0, 2.0, 3.0, 6.0)]


def test_the_writer_marks_the_sessions_start_and_stop(tmp_path: Path) -> None:
    bus = EventBus()
    log = SessionLog(bus, tmp_path / "log")
    log.start()
    bus.publish(BackendStatus(0.5, "stt", "ok", "ready"))
    bus.publish(BackendStatus(1.25, "session", "ok", "started"))
    bus.publish(BackendStatus(9.0, "session", "ok", "stopped (the front-end did not close in time: killed)"))
    log.close()
    events = read_log(log.path)
    assert events[2] == SessionStarted(1.25)
    assert events[3] == SessionStopped(9.0, "stopped (the front-end did not close in time: killed)")
    assert isinstance(events[-1], BackendStatus) and events[-1].message.startswith("stopped")
    raw = [json.loads(line)["type"] for line in log.path.read_text(encoding="utf-8").splitlines()]
    assert raw.count("SessionStarted") == 1 and raw.count("SessionStopped") == 1


def test_a_log_written_before_the_marks_gets_them_from_its_status(tmp_path: Path) -> None:
    folder = write_session_log(tmp_path / "log")
    path = folder / "events.jsonl"
    lines = [
        ln for ln in path.read_text(encoding="utf-8").splitlines() if '"Session' not in ln or "Summary" in ln
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    record = read_session(folder)
    assert record.of_type(SessionStarted) == [SessionStarted(ORIGIN)]
    assert record.origin == ORIGIN and len(record.of_type(SessionStopped)) == 1


def test_only_the_cli_imports_the_benches_and_logs_are_read_through_the_codec() -> None:
    import ast

    package = Path(__file__).resolve().parents[2] / "kame_cli"
    importers, raw_readers = [], []
    for path in package.rglob("*.py"):
        relative = path.relative_to(package).as_posix()
        source = path.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(source)):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
            outside = relative != "cli.py" and not relative.startswith("bench/")
            if outside and any(n == "kame_cli.bench" or n.startswith("kame_cli.bench.") for n in names):
                importers.append(relative)
        codec = relative == "session/logfile.py"  # the one place that marks the start
        by_name = re.search(r"""\[["']type["']\] == ["'](""" + "|".join(EVENT_TYPES) + ")", source)
        if not codec and (by_name or 'message == "started"' in source):
            raw_readers.append(relative)
    assert importers == [], importers
    assert raw_readers == [], "a log read as raw dicts or a start found by its message"


def test_the_docs_list_every_event_as_the_codec_reads_it() -> None:
    from kame_cli.session.logfile import event_table

    page = (Path(__file__).resolve().parents[2] / "docs" / "session-log.md").read_text(encoding="utf-8")
    assert event_table() in page, "docs/session-log.md is stale: paste event_table()'s output into it"
