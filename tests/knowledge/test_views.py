"""Retrievals where a user looks: the live panel, the plain lines, `kame plot`, `kame replay`'s line."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from kame_cli.events import OracleRequestStarted, Retrieval
from kame_cli.knowledge.summary import retrieval_line
from kame_cli.ui.lines import LineView
from kame_cli.ui.panel import render_panel
from kame_cli.ui.state import ViewState
from tests.support.session_log import ORIGIN, session_events, write_session_log

FOUND = Retrieval(1.2, 3, 4.4, "ok", 300, "return the kettle", ("handbook.md > Returns", "faq.md"))
LATE = Retrieval(2.0, 4, 250.7, "timeout", 0, "shipping", ())


def test_the_panel_shows_the_last_retrieval_with_its_sources_and_time() -> None:
    state = ViewState()
    state.apply(OracleRequestStarted(1.1, 3, "first", "return the kettle"))
    state.apply(FOUND)
    console = Console(file=io.StringIO(), width=120, force_terminal=False)
    console.print(render_panel(state, lambda _: ""))
    assert "Documents  #3 2 in 4 ms: handbook.md > Returns; faq.md" in console.file.getvalue()
    state.apply(LATE)
    console.print(render_panel(state, lambda _: ""))
    assert "#4 0 in 251 ms, timeout: no passage" in console.file.getvalue()


def test_the_plain_lines_say_each_retrieval() -> None:
    out = io.StringIO()
    view = LineView(out)
    view.show(FOUND)
    assert out.getvalue() == "[   1.20] documents #3 2 in 4 ms: handbook.md > Returns; faq.md\n"


def test_replay_s_line_sums_up_a_session_s_retrievals() -> None:
    assert retrieval_line(session_events(3.0)) == (
        "documents: 1 retrievals (median 4 ms); passages from atlas.md > France (1)"
    )
    assert retrieval_line([FOUND, LATE, FOUND]) == (
        "documents: 3 retrievals (median 4 ms, 1 late or failed); passages from "
        "handbook.md > Returns (2), faq.md (2)"
    )
    assert retrieval_line([]) is None


def test_the_plot_marks_each_retrieval_on_its_request_s_row(tmp_path: Path) -> None:
    from kame_cli.plot.timeline import draw_session

    log = write_session_log(tmp_path / "log")
    fig = draw_session(log, tmp_path / "session.png", figures=[])
    oracle = fig.axes[2]
    (mark,) = [line for line in oracle.lines if line.get_marker() == "D" and line.get_color() == "#6a1b9a"]
    (retrieval,) = [e for e in session_events(1.0) if isinstance(e, Retrieval)]
    assert list(mark.get_xdata()) == [retrieval.t - ORIGIN]
