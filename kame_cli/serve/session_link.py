"""One session's side of the front-end host's link, shared by the single-session host and the batch.

Everything the host tells the supervisor about a session carries its id (`serve.wire`); this is the
one place that tags it, and the one place that routes a client's frames and oracle commands to the
session they name.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from kame_cli.events import OracleAppend, OracleClear, OracleCommand, OracleReset
from kame_cli.serve.wire import ClientFrame, OutputFrame, SessionEnded, SessionEvent, SessionStarted
from kame_cli.session.link import Link
from kame_cli.session.wire import Failure, one_line


class SessionLink:
    """The loop's event sink and output for session `session`, and the session's bounds."""

    def __init__(self, link: Link, session: int) -> None:
        self._link = link
        self.session = session

    def publish(self, event: Any) -> None:
        """An event (or a `Failure`), to the supervisor tagged with the session."""
        self._link.send(SessionEvent(self.session, event))

    def output(self, index: int, pcm: np.ndarray) -> None:
        """Step `index`'s voice, stamped with when it was produced."""
        data = np.asarray(pcm, np.float32).tobytes()
        self._link.send_frame(OutputFrame(self.session, index, data, time.monotonic()))

    def started(self) -> None:
        self._link.send(SessionStarted(self.session))

    def refused(self, err: BaseException) -> None:
        """The session could not start: its one line, then its end with no counts."""
        self.publish(Failure.of(err, "the front-end failed to start a session"))
        self.ended({})

    def loop_failed(self, error: BaseException) -> None:
        self.publish(Failure(f"the front-end stopped: {one_line(error)}", 1))

    def ended(self, stats: dict[str, int]) -> None:
        self._link.send(SessionEnded(self.session, stats))


class SessionInput(Protocol):
    """Where a running session takes its client's frames and its oracle commands (never blocking)."""

    def offer(self, pcm: np.ndarray) -> None: ...

    def send_oracle(self, command: OracleCommand) -> None: ...


def route_input(message: Any, find: Callable[[int], SessionInput | None]) -> bool:
    """Hand a client frame or an oracle command to the session it names, if that one runs (a late
    message of an ended session is dropped); False for a message that is neither."""
    if isinstance(message, ClientFrame):
        target = find(message.session)
        if target is not None:
            target.offer(np.frombuffer(message.pcm, dtype=np.float32))
        return True
    if isinstance(message, SessionEvent) and isinstance(
        message.event, OracleReset | OracleAppend | OracleClear
    ):
        target = find(message.session)
        if target is not None:
            target.send_oracle(message.event)
        return True
    return False
