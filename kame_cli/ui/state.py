"""What the live view shows, folded from events by the UI thread alone (its only writer)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from kame_cli.events import (
    AecStatus,
    AudioXrun,
    BackendStatus,
    DeadlineMiss,
    Event,
    FinalTranscript,
    FramesDropped,
    FrontendText,
    OracleChunk,
    OracleFed,
    OracleFinished,
    OracleRequestStarted,
    PartialTranscript,
    ProcessEnded,
    ProcessStarted,
    Retrieval,
    StepTiming,
    ToolCallFinished,
    ToolCallStarted,
)
from kame_cli.stats import percentile

_TIMING_WINDOW = 250  # steps (20 s) behind the step-time percentiles
_ASSISTANT_CHARS = 600


@dataclass
class OracleView:
    """The oracle stream as the front-end sees it: tokens given and tokens already consumed."""

    generation: int = -1
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    consumed: int = 0
    """Answer tokens the front-end has stepped past (the start token is not counted): one per step
    from the reset on, whether fed or skipped because they arrived after their step."""
    start_step: int | None = None
    started_at: float | None = None
    first_fed_at: float | None = None
    outcome: str = ""


@dataclass
class ViewState:
    """Everything the panel and the plain-line view render."""

    user_turns: list[str] = field(default_factory=list)
    committed: str = ""
    tentative: str = ""
    oracle: OracleView = field(default_factory=OracleView)
    requests: int = 0
    restarts: int = 0
    cancels: int = 0
    failures: int = 0
    assistant: str = ""
    step_ms: deque[float] = field(default_factory=lambda: deque(maxlen=_TIMING_WINDOW))
    steps: int = 0
    deadline_misses: int = 0
    xruns: dict[str, int] = field(default_factory=dict)
    ttft_ms: deque[float] = field(default_factory=lambda: deque(maxlen=20))
    oracle_lag_ms: deque[float] = field(default_factory=lambda: deque(maxlen=20))
    status: dict[str, tuple[str, str]] = field(default_factory=dict)
    """component -> (state, message) as last reported."""
    request_started: dict[int, float] = field(default_factory=dict)
    lag_window: deque[float] = field(default_factory=lambda: deque(maxlen=_TIMING_WINDOW))
    start_token_id: int | None = None
    """The front-end's text start token: fed first after every oracle reset."""
    dropped_events: int = 0
    """Events the view could not take in time (it fell behind); set by its owner."""
    lag_ms: float = 0.0
    """How far behind the user the front-end was at its last step."""
    max_lag_ms: float = 0.0
    """The largest lag seen in the last timing window."""
    dropped_frames: int = 0
    """Input frames the front-end's lag bound dropped."""
    backend_restarts: int = 0
    process_deaths: list[str] = field(default_factory=list)
    retrieval: Retrieval | None = None
    """[knowledge] The last retrieval from the user's documents."""

    def apply(self, event: Event) -> None:
        """Fold one event into the view."""
        handler = _HANDLERS.get(type(event))
        if handler is not None:
            handler(self, event)

    def step_percentile(self, q: float) -> float:
        return percentile(list(self.step_ms), q)

    def oracle_pieces(self, piece: Callable[[int], str]) -> tuple[str, str]:
        """The current oracle answer split into (consumed, pending) text; `piece` gives a token's text."""
        ids = self.oracle.token_ids
        done = min(self.oracle.consumed, len(ids))
        return _join_pieces(piece, ids[:done]), _join_pieces(piece, ids[done:])


def _join_pieces(piece: Callable[[int], str], ids: list[int]) -> str:
    return "".join(piece(i) for i in ids)


def _on_partial(state: ViewState, ev: PartialTranscript) -> None:
    state.committed, state.tentative = ev.committed, ev.tentative


def _on_final(state: ViewState, ev: FinalTranscript) -> None:
    state.user_turns.append(ev.text)
    state.committed, state.tentative = "", ""


def _on_request(state: ViewState, ev: OracleRequestStarted) -> None:
    state.requests += 1
    if state.request_started:
        state.restarts += 1  # another request was still running: this one supersedes it
    state.request_started[ev.generation] = ev.t


def _on_chunk(state: ViewState, ev: OracleChunk) -> None:
    view = state.oracle
    if ev.first or ev.generation != view.generation:
        state.oracle = view = OracleView(
            generation=ev.generation, started_at=state.request_started.get(ev.generation)
        )
        state.ttft_ms.append(ev.latency_ms)
    view.text = f"{view.text} {ev.text}".strip()
    view.token_ids.extend(ev.token_ids)


def _on_finished(state: ViewState, ev: OracleFinished) -> None:
    if ev.outcome == "cancelled":
        state.cancels += 1
    elif ev.outcome == "failed":
        state.failures += 1
    if ev.generation == state.oracle.generation:
        state.oracle.outcome = ev.outcome
        if ev.outcome == "failed":
            # The producer withdrew what the front-end had not reached yet.
            del state.oracle.token_ids[state.oracle.consumed :]
    state.request_started.pop(ev.generation, None)


def _on_fed(state: ViewState, ev: OracleFed) -> None:
    view = state.oracle
    is_start = (
        ev.token_id == state.start_token_id if state.start_token_id is not None else view.first_fed_at is None
    )
    if is_start:
        # The start token opens every oracle: from here the LLM's answer reaches the voice.
        view.first_fed_at = ev.t
        view.start_step = ev.step
        view.consumed = 0
        if view.started_at is not None:
            state.oracle_lag_ms.append((ev.t - view.started_at) * 1000.0)
        return
    if view.start_step is not None:
        view.consumed = max(view.consumed, ev.step - view.start_step)
    else:
        view.consumed += 1


def _on_text(state: ViewState, ev: FrontendText) -> None:
    state.assistant = (state.assistant + ev.text)[-_ASSISTANT_CHARS:]


def _on_timing(state: ViewState, ev: StepTiming) -> None:
    state.step_ms.append(ev.total_ms)
    state.steps = ev.step + 1
    state.lag_ms = ev.lag_ms
    state.lag_window.append(ev.lag_ms)
    state.max_lag_ms = max(state.lag_window)


def _on_dropped(state: ViewState, ev: FramesDropped) -> None:
    state.dropped_frames = ev.total


def _on_process_started(state: ViewState, ev: ProcessStarted) -> None:
    if ev.attempt > 1:
        state.backend_restarts += 1


def _on_process_ended(state: ViewState, ev: ProcessEnded) -> None:
    if not ev.expected:
        state.process_deaths.append(f"{ev.role} {ev.reason}")


def _on_miss(state: ViewState, ev: DeadlineMiss) -> None:
    state.deadline_misses += 1


def _on_xrun(state: ViewState, ev: AudioXrun) -> None:
    state.xruns[ev.kind] = ev.total


def _on_status(state: ViewState, ev: BackendStatus) -> None:
    state.status[ev.component] = (ev.state, ev.message)


def _on_aec(state: ViewState, ev: AecStatus) -> None:
    # [aec] Shown in the Status row: the canceller runs, how much echo it removes, the devices' delay.
    erle = "ERLE —" if ev.erle_db is None else f"ERLE {ev.erle_db:.0f} dB"
    delay = "" if ev.delay_ms is None else f", delay {ev.delay_ms:.0f} ms"
    state.status["aec"] = ("ok", f"on, {erle}{delay}")


def retrieval_text(ev: Retrieval) -> str:
    """One retrieval in words: which passages, from where, how long (the panel and the lines)."""
    found = "; ".join(ev.sources) if ev.sources else "no passage"
    late = "" if ev.outcome == "ok" else f", {ev.outcome}"
    return f"#{ev.generation} {len(ev.sources)} in {ev.duration_ms:.0f} ms{late}: {found}"


def _on_retrieval(state: ViewState, ev: Retrieval) -> None:
    state.retrieval = ev


def _on_tool_call(state: ViewState, ev: ToolCallStarted | ToolCallFinished) -> None:
    # The Status row's "tools" line: the call running now, or how the last one ended.
    from kame_cli.ui.lines import tool_call_text

    failed = isinstance(ev, ToolCallFinished) and ev.outcome not in ("ok", "cancelled")
    state.status["tools"] = ("degraded" if failed else "ok", tool_call_text(ev))


_HANDLERS: dict[type, Callable[[ViewState, object], None]] = {
    PartialTranscript: _on_partial,  # type: ignore[dict-item]
    FinalTranscript: _on_final,  # type: ignore[dict-item]
    OracleRequestStarted: _on_request,  # type: ignore[dict-item]
    OracleChunk: _on_chunk,  # type: ignore[dict-item]
    OracleFinished: _on_finished,  # type: ignore[dict-item]
    OracleFed: _on_fed,  # type: ignore[dict-item]
    FrontendText: _on_text,  # type: ignore[dict-item]
    StepTiming: _on_timing,  # type: ignore[dict-item]
    DeadlineMiss: _on_miss,  # type: ignore[dict-item]
    AudioXrun: _on_xrun,  # type: ignore[dict-item]
    BackendStatus: _on_status,  # type: ignore[dict-item]
    FramesDropped: _on_dropped,  # type: ignore[dict-item]
    ProcessStarted: _on_process_started,  # type: ignore[dict-item]
    ProcessEnded: _on_process_ended,  # type: ignore[dict-item]
    AecStatus: _on_aec,  # type: ignore[dict-item]
    Retrieval: _on_retrieval,  # type: ignore[dict-item]
    ToolCallStarted: _on_tool_call,  # type: ignore[dict-item]
    ToolCallFinished: _on_tool_call,  # type: ignore[dict-item]
}
