"""Plain line output for pipes and `--no-ui`: one line per notable event, no redraws."""

from __future__ import annotations

from typing import TextIO

from kame_cli.events import (
    BackendStatus,
    DeadlineMiss,
    Event,
    FinalTranscript,
    FrontendText,
    OracleChunk,
    OracleFinished,
    OracleRequestStarted,
    ProcessEnded,
    ProcessStarted,
    Retrieval,
    ToolCallFinished,
    ToolCallStarted,
)
from kame_cli.ui.state import retrieval_text


def tool_call_text(event: ToolCallStarted | ToolCallFinished) -> str:
    """One tool call in words, for the plain lines, the panel and `kame replay`."""
    if isinstance(event, ToolCallStarted):
        return f"tool {event.server}.{event.name}({event.arguments}) running"
    size = (
        f", {event.result_chars} chars" + (" (cut)" if event.truncated else "") if event.result_chars else ""
    )
    why = f": {event.message}" if event.message else ""
    return f"tool {event.server}.{event.name} {event.outcome} in {event.duration_ms:.0f} ms{size}{why}"


class LineView:
    """Prints user turns, oracle requests and outcomes, the assistant's words and status changes."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._assistant = ""

    def show(self, event: Event) -> None:
        line = self._line(event)
        if line is not None:
            self._out.write(f"[{event.t:7.2f}] {line}\n")

    def flush(self) -> None:
        if self._assistant.strip():
            self._out.write(f"assistant: {self._assistant.strip()}\n")
            self._assistant = ""
        self._out.flush()

    def _line(self, event: Event) -> str | None:
        if isinstance(event, FrontendText):
            self._assistant += event.text
            if event.text.rstrip().endswith((".", "?", "!")) or len(self._assistant) > 100:
                text, self._assistant = self._assistant.strip(), ""
                return f"assistant: {text}" if text else None
            return None
        if isinstance(event, FinalTranscript):
            return f"user: {event.text}"
        if isinstance(event, OracleRequestStarted):
            return f"oracle #{event.generation} requested ({event.reason}): {event.user_text!r}"
        if isinstance(event, OracleChunk) and event.first:
            return f"oracle #{event.generation} first token after {event.latency_ms:.0f} ms"
        if isinstance(event, OracleFinished):
            return f"oracle #{event.generation} {event.outcome}: {event.text!r}"
        if isinstance(event, Retrieval):
            return f"documents {retrieval_text(event)}"
        if isinstance(event, BackendStatus):
            return f"{event.component} {event.state}: {event.message}"
        if isinstance(event, ToolCallStarted | ToolCallFinished):
            return f"oracle #{event.generation} {tool_call_text(event)}"
        if isinstance(event, ProcessEnded) and not event.expected:
            return f"{event.role} process died ({event.reason})"
        if isinstance(event, ProcessStarted) and event.attempt > 1:
            return f"{event.role} process restarted (pid {event.pid}, attempt {event.attempt})"
        if isinstance(event, DeadlineMiss):
            return f"deadline miss at step {event.step}: {event.total_ms:.1f} ms > {event.budget_ms:.0f} ms"
        return None
