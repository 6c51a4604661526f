"""Tool calls as every view shows them: the session log (written and read back), the panel's status
line, the plain lines, `kame plot`'s marker on the request's lane, and `kame replay`'s line."""

from __future__ import annotations

import io
from pathlib import Path

from kame_cli.events import ToolCallFinished, ToolCallStarted
from kame_cli.session.logfile import encode_events, read_log
from kame_cli.ui.lines import LineView
from kame_cli.ui.state import ViewState
from tests.support.session_log import write_session_log

STARTED = ToolCallStarted(2.0, 3, "call_1", "orders", "lookup_order", '{"order_id": "A17"}')
WHY = "no answer within timeout_s=1.5 s"
TIMED_OUT = ToolCallFinished(3.5, 3, "call_1", "orders", "lookup_order", "timeout", 1500.0, 0, False, WHY)
FLOODED = ToolCallFinished(4.0, 4, "call_2", "orders", "huge", "ok", 900.0, 10_485_760, True, "")


def test_tool_calls_are_written_and_read_back_as_typed_events(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(encode_events([STARTED, TIMED_OUT, FLOODED]))
    assert read_log(path)[-3:] == [STARTED, TIMED_OUT, FLOODED]


def test_the_panel_shows_the_running_call_then_how_it_ended() -> None:
    state = ViewState()
    state.apply(STARTED)
    assert state.status["tools"] == ("ok", 'tool orders.lookup_order({"order_id": "A17"}) running')
    state.apply(TIMED_OUT)
    level, message = state.status["tools"]
    assert level == "degraded" and "timeout in 1500 ms" in message and "timeout_s=1.5 s" in message
    state.apply(FLOODED)
    assert state.status["tools"] == ("ok", "tool orders.huge ok in 900 ms, 10485760 chars (cut)")


def test_the_plain_lines_tell_each_call() -> None:
    out = io.StringIO()
    view = LineView(out)
    for event in (STARTED, TIMED_OUT):
        view.show(event)
    lines = out.getvalue().splitlines()
    assert lines[0].endswith('oracle #3 tool orders.lookup_order({"order_id": "A17"}) running')
    assert "oracle #3 tool orders.lookup_order timeout in 1500 ms" in lines[1]


def test_plot_marks_the_call_on_its_requests_lane(tmp_path: Path) -> None:
    from kame_cli.plot.timeline import draw_session

    log_dir = write_session_log(tmp_path / "log")  # holds a capital_of call of request #1
    fig = draw_session(log_dir, tmp_path / "session.svg")
    oracle = fig.axes[2]
    assert "a tool call" in oracle.get_title(loc="left")
    assert any(text.get_text() == "capital_of ok 70 ms" for text in oracle.texts)
    assert any(line.get_marker() == "D" for line in oracle.lines)


def test_replay_says_a_line_per_tool_call(tmp_path: Path) -> None:
    from kame_cli.replay import _say_tool_calls

    said: list[str] = []
    _say_tool_calls(write_session_log(tmp_path / "log"), said.append)
    assert said == ["  oracle #1 tool atlas.capital_of ok in 70 ms, 5 chars"]
    _say_tool_calls(tmp_path, said.append)  # a replay that wrote no log: nothing more
    assert len(said) == 1
