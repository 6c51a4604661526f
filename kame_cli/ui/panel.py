"""The Rich live panel: the user's words, the oracle at work, the assistant's words, and meters."""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from kame_cli.stats import percentile
from kame_cli.ui.state import ViewState, retrieval_text

BUDGET_MS = 80.0
_STATUS_STYLE = {"ok": "green", "degraded": "yellow", "error": "bold red"}


def render_panel(state: ViewState, piece: Callable[[int], str], title: str = "kame") -> RenderableType:
    """One frame of the live view."""
    return Group(
        Text(f"{title} · Ctrl-C to end", style="bold"),
        _user(state),
        _oracle(state, piece),
        Panel(Text(state.assistant[-300:] or "…", style="cyan"), title="Assistant says", title_align="left"),
        _meters(state),
    )


def _user(state: ViewState) -> Panel:
    text = Text()
    for turn in state.user_turns[-2:]:
        text.append(turn + "\n", style="dim")
    text.append(state.committed, style="bold")
    if state.tentative:
        text.append((" " if state.committed else "") + state.tentative, style="italic grey50")
    if not text.plain.strip():
        text.append("(listening)", style="grey50")
    return Panel(text, title="You", title_align="left")


def _oracle(state: ViewState, piece: Callable[[int], str]) -> Panel:
    view = state.oracle
    consumed, pending = state.oracle_pieces(piece)
    text = Text()
    text.append(consumed, style="bold green")
    text.append(pending, style="grey62")
    if not text.plain.strip():
        text.append("(no oracle yet)", style="grey50")
    total = len(view.token_ids)
    subtitle = (
        f"gen {max(view.generation, 0)} · tokens {min(view.consumed, total)}/{total} consumed"
        f" · requests {state.requests} · restarts {state.restarts} · cancels {state.cancels}"
        f" · failed {state.failures}"
    )
    if view.outcome:
        subtitle += f" · {view.outcome}"
    return Panel(text, title="Oracle (LLM)", title_align="left", subtitle=subtitle, subtitle_align="left")


def _meters(state: ViewState) -> Panel:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    p50, p99 = state.step_percentile(50), state.step_percentile(99)
    step_style = "green" if p99 <= BUDGET_MS else "bold red"
    table.add_row(
        "Step",
        Text(
            f"p50 {p50:.1f} ms · p99 {p99:.1f} ms / {BUDGET_MS:.0f} ms budget · steps {state.steps}",
            style=step_style,
        ),
    )
    lag_style = "bold red" if state.dropped_frames else ("yellow" if state.max_lag_ms > BUDGET_MS else "")
    table.add_row(
        "Lag",
        Text(
            f"now {state.lag_ms:.0f} ms · max {state.max_lag_ms:.0f} ms (last 20 s)"
            f" · dropped {state.dropped_frames} frames",
            style=lag_style,
        ),
    )
    xruns = ", ".join(f"{k} {v}" for k, v in sorted(state.xruns.items())) or "0"
    misses = f"deadline {state.deadline_misses} · xruns {xruns}"
    if state.dropped_events:
        misses += f" · panel skipped {state.dropped_events} events"
    table.add_row("Misses", misses)
    ttft = percentile(list(state.ttft_ms), 50)
    lag = percentile(list(state.oracle_lag_ms), 50)
    table.add_row("LLM", f"first token {ttft:.0f} ms · oracle lag {lag:.0f} ms (median of last 20)")
    if state.retrieval is not None:  # [knowledge]
        table.add_row("Documents", retrieval_text(state.retrieval))
    status = Text()
    for component, (level, message) in sorted(state.status.items()):
        # One line per part: a long message wraps within its own line, never into the next part's.
        if status.plain:
            status.append("\n")
        status.append(f"{component}: ", style="bold")
        status.append(f"{level}", style=_STATUS_STYLE.get(level, ""))
        if message:
            status.append(f" ({message})")
    table.add_row("Status", status if status.plain else Text("starting", style="grey50"))
    if state.process_deaths or state.backend_restarts:
        deaths = "; ".join(state.process_deaths[-2:])
        table.add_row(
            "Processes",
            Text(f"died: {deaths or '-'} · back-end restarts {state.backend_restarts}", style="bold red"),
        )
    return Panel(table, title="Meters", title_align="left")
