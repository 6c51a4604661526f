"""One end of the socket between two kame processes: sends never block the caller, reads on a thread.

`send` queues a message for the link's sender thread (lossless: the session log must lose
nothing); `send_frame` does the same for audio frames but drops, and counts, beyond a bound, so a
stalled or dead peer never makes the sender's memory grow. The reader thread hands every message
to `on_message` and calls `on_closed` once when the peer is gone (it exited or was killed).

A link runs over any `Wire` (the three calls of `multiprocessing.connection.Connection`): the
socket between processes, or an in-memory pair in the supervisor's unit tests.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from typing import Any, Protocol

_CLOSE = object()
_FRAME = object()


class Wire(Protocol):
    """One end of a message channel: `recv` raises EOFError (or OSError) once the peer is gone."""

    def send(self, obj: Any) -> None: ...

    def recv(self) -> Any: ...

    def close(self) -> None: ...


class Link:
    """A `Wire` with a sender thread and a reader thread; each side owns one Link per peer."""

    def __init__(
        self,
        conn: Wire,
        name: str,
        on_message: Callable[[Any], None],
        on_closed: Callable[[], None] | None = None,
        *,
        frame_limit: int = 0,
    ) -> None:
        self.name = name
        self._conn = conn
        self._on_message = on_message
        self._on_closed = on_closed
        self._frame_limit = frame_limit
        self._outbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._frames_waiting = 0
        self._count_lock = threading.Lock()
        self.dropped_frames = 0
        """Frames `send_frame` dropped because `frame_limit` frames were already waiting."""
        self.broken = False
        """The peer is gone: sends are discarded."""
        self._sender = threading.Thread(target=self._send_loop, name=f"kame-{name}-send", daemon=True)
        self._reader = threading.Thread(target=self._read_loop, name=f"kame-{name}-read", daemon=True)

    def start(self) -> None:
        self._sender.start()
        self._reader.start()

    def send(self, message: Any) -> None:
        """Queue `message` (lossless); never blocks."""
        if not self.broken:
            self._outbox.put(message)

    def send_frame(self, message: Any) -> bool:
        """Queue an audio frame unless `frame_limit` frames already wait; False (counted) if dropped."""
        if self.broken:
            return False
        with self._count_lock:
            if self._frame_limit and self._frames_waiting >= self._frame_limit:
                self.dropped_frames += 1
                return False
            self._frames_waiting += 1
        self._outbox.put((_FRAME, message))
        return True

    def wait_closed(self, timeout: float) -> bool:
        """Wait until the reader has seen the peer go (and `on_closed` returned); True if it has."""
        self._reader.join(timeout)
        return not self._reader.is_alive()

    def close(self, timeout: float = 1.0) -> None:
        """Send what is queued (bounded by `timeout`), then close the socket."""
        self._outbox.put(_CLOSE)
        if self._sender.ident is not None:
            self._sender.join(timeout)
        self.broken = True
        self._conn.close()

    def _send_loop(self) -> None:
        while True:
            item = self._outbox.get()
            if item is _CLOSE:
                return
            if isinstance(item, tuple) and len(item) == 2 and item[0] is _FRAME:
                with self._count_lock:
                    self._frames_waiting -= 1
                item = item[1]
            if self.broken:
                continue
            try:
                self._conn.send(item)
            except (OSError, ValueError):
                # The peer is gone (or the socket closed under us): the reader reports it.
                self.broken = True

    def _read_loop(self) -> None:
        # EOFError/OSError: the peer exited or was killed, or we closed the socket: on_closed says so.
        try:
            with contextlib.suppress(EOFError, OSError, ValueError):
                while True:
                    self._on_message(self._conn.recv())
        finally:
            self.broken = True
            if self._on_closed is not None:
                self._on_closed()


class ChildLink(Link):
    """A child process's link to the supervisor. Its reader thread hands every message to
    `on_message`, which acts at once on what must not wait (frames, oracle commands) and `defer`s
    the rest to the main thread's `messages`; those end when the supervisor is gone."""

    def __init__(
        self, conn: Wire, name: str, on_message: Callable[[Any], None], *, frame_limit: int = 0
    ) -> None:
        self._deferred: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.supervisor_gone = threading.Event()
        super().__init__(conn, name, on_message, self.supervisor_gone.set, frame_limit=frame_limit)

    def defer(self, message: Any) -> None:
        self._deferred.put(message)

    def messages(self, poll_s: float, *, idle: bool = False) -> Iterator[Any]:
        """The deferred messages as they come, until the supervisor is gone; with `idle`, also None
        every `poll_s` without one, for a loop that has other work."""
        while not self.supervisor_gone.is_set():
            try:
                yield self._deferred.get(timeout=poll_s)
            except queue.Empty:
                if idle:
                    yield None


def serve_child(argv: list[str] | None, run: Callable[[Connection, Any], int]) -> None:
    """A child process's `main`: the socket on `--fd N`, the setup message, `run(conn, setup)`, then
    `os._exit` with its code (1 when the supervisor went away before the setup arrived). Every file
    is closed by then; tearing torch or CTranslate2 down at exit only costs time."""
    args = sys.argv[1:] if argv is None else argv
    conn = Connection(int(args[args.index("--fd") + 1]))
    try:
        code = run(conn, conn.recv())
    except (EOFError, OSError):
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
