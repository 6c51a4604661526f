"""The live view: state folded from events, the Rich panel and the plain-line output."""

from __future__ import annotations

import io

from rich.console import Console

from kame_cli import events as ev
from kame_cli.stats import percentile
from kame_cli.ui.lines import LineView
from kame_cli.ui.panel import render_panel
from kame_cli.ui.state import ViewState

START = 100
PIECES = {1: " Paris", 2: " is", 3: " the", 4: " capital"}


def _piece(token_id: int) -> str:
    return PIECES.get(token_id, "?")


def _session_events() -> list:
    return [
        ev.PartialTranscript(0.5, committed="what is the", tentative="capital", audio_end=1.0),
        ev.OracleRequestStarted(0.6, generation=1, reason="first", user_text="what is the capital"),
        ev.OracleRequestStarted(1.1, generation=2, reason="words", user_text="what is the capital of France"),
        ev.OracleFinished(1.1, generation=1, outcome="cancelled", text=""),
        ev.OracleChunk(1.3, generation=2, text="Paris is", token_ids=(1, 2), first=True, latency_ms=200.0),
        ev.OracleFed(1.36, step=17, token_id=START, pending=2),
        ev.OracleFed(1.44, step=18, token_id=1, pending=1),
        ev.OracleChunk(
            1.45, generation=2, text="the capital", token_ids=(3, 4), first=False, latency_ms=350.0
        ),
        ev.FrontendText(1.5, step=19, text=" Paris"),
        ev.StepTiming(1.5, step=19, encode_ms=5, lm_ms=10, decode_ms=5, total_ms=20.0),
        ev.StepTiming(1.58, step=20, encode_ms=5, lm_ms=90, decode_ms=5, total_ms=100.0),
        ev.DeadlineMiss(1.58, step=20, total_ms=100.0, budget_ms=80.0),
        ev.BackendStatus(1.6, component="llm", state="error", message="connection refused"),
        ev.FinalTranscript(2.0, text="what is the capital of France", audio_start=0.0, audio_end=2.0),
    ]


def test_view_state_counts_restarts_consumption_and_lag() -> None:
    state = ViewState(start_token_id=START)
    for event in _session_events():
        state.apply(event)
    assert (state.requests, state.restarts, state.cancels) == (2, 1, 1)
    assert state.oracle.generation == 2 and state.oracle.token_ids == [1, 2, 3, 4]
    assert state.oracle_pieces(_piece) == (" Paris", " is the capital")
    assert list(state.ttft_ms) == [200.0]
    assert [round(x) for x in state.oracle_lag_ms] == [260]  # request at 1.1 s, start token fed at 1.36 s
    assert state.deadline_misses == 1 and state.steps == 21
    assert state.status["llm"] == ("error", "connection refused")
    assert state.user_turns == ["what is the capital of France"] and state.committed == ""


def test_panel_renders_every_section_with_values() -> None:
    state = ViewState(start_token_id=START)
    for event in _session_events()[:-1]:
        state.apply(event)
    console = Console(file=io.StringIO(), width=100, force_terminal=False)
    console.print(render_panel(state, _piece))
    screen = console.file.getvalue()
    for expected in (
        "You",
        "what is the capital",
        "Oracle (LLM)",
        "tokens 1/4 consumed",
        "restarts 1",
        "Assistant says",
        "Paris",
        "p99 100.0 ms / 80 ms",
        "deadline 1",
        "llm: error",
        "connection refused",
    ):
        assert expected in screen, expected


def test_line_view_prints_turns_oracle_and_status() -> None:
    out = io.StringIO()
    view = LineView(out)
    for event in _session_events():
        view.show(event)
    view.flush()
    text = out.getvalue()
    assert "user: what is the capital of France" in text
    assert "oracle #1 cancelled" in text and "oracle #2 first token after 200 ms" in text
    assert "llm error: connection refused" in text and "assistant: Paris" in text


def test_percentile_nearest_rank() -> None:
    assert percentile([], 99) == 0.0
    assert percentile([float(i) for i in range(1, 101)], 50) in (50.0, 51.0)
    assert percentile([1.0, 2.0, 3.0], 100) == 3.0
