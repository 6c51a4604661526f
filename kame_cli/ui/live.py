"""The view a session runs under: a Rich live panel on a terminal, plain lines otherwise."""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import TextIO

from kame_cli.bus import EventBus
from kame_cli.ui.lines import LineView
from kame_cli.ui.state import ViewState

_PANEL_QUEUE = 20_000  # events held for the panel between refreshes before it drops (and counts) some


class SessionView:
    """Drains the session's events on the caller's thread (never the real-time one) and shows them."""

    def __init__(
        self,
        bus: EventBus,
        out: TextIO,
        *,
        piece: Callable[[int], str],
        start_token_id: int | None,
        live: bool,
        title: str = "kame",
    ) -> None:
        self.state = ViewState(start_token_id=start_token_id)
        self._subscription = bus.subscribe("view", maxsize=_PANEL_QUEUE)
        self._bus = bus
        self._out = out
        self._piece = piece
        self.title = title
        self.terminal_gone = False
        """A write to `out` failed (the terminal closed): nothing more is drawn."""
        self._lines = None if live else LineView(out)
        self._live = None
        if live:
            from rich.console import Console
            from rich.live import Live

            console = Console(file=out)
            self._live = Live(console=console, auto_refresh=False, transient=False, redirect_stderr=False)

    def __enter__(self) -> SessionView:
        if self._live is not None:
            self._draw(self._live.start)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.refresh()
        if self._live is not None:
            self._draw(self._live.stop)
        if self._lines is not None:
            self._draw(self._lines.flush)
        self._bus.unsubscribe(self._subscription)

    def refresh(self) -> None:
        """Fold every queued event into the state, then redraw (or print the new lines)."""
        self.state.dropped_events = self._subscription.dropped
        lines = self._lines if not self.terminal_gone else None
        events = self._subscription.drain()
        for event in events:
            self.state.apply(event)
        if lines is not None:

            def show_all() -> None:
                for event in events:
                    lines.show(event)

            self._draw(show_all)
        if self._live is not None:
            from kame_cli.ui.panel import render_panel

            live = self._live
            self._draw(lambda: live.update(render_panel(self.state, self._piece, self.title), refresh=True))
        elif self._lines is not None:
            self._draw(self._out.flush)

    def _draw(self, write: Callable[[], object]) -> None:
        # A terminal that went away (SIGHUP: the window closed) fails every write with EIO; the
        # session then ends in order all the same, so stop drawing instead of raising.
        if self.terminal_gone:
            return
        try:
            write()
        except OSError:
            self.terminal_gone = True

    @property
    def dropped(self) -> int:
        return self._subscription.dropped
