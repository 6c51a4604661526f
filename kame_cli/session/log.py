"""Opt-in session log: every event as one JSON line on the session clock, lossless, user-only files.

Lines go out whole: each batch is written with `os.write` from a known offset, and a write that
fails (disk full) is cut back to the last whole line, so `events.jsonl` never ends in half a line.
After a failed write the log stops writing (the session goes on) and `error` says why.
The line format (and its reader, `read_log`) is `kame_cli.session.logfile`'s.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from pathlib import Path

from kame_cli.bus import EventBus, Subscription
from kame_cli.errors import LogWriteError
from kame_cli.events import Event
from kame_cli.priority import deprioritize_current_thread
from kame_cli.session.files import EVENTS_FILE, open_session_file, prepare_log_dir
from kame_cli.session.logfile import encode_events, event_record, with_session_marks

__all__ = ["SessionLog", "event_record", "prepare_log_dir"]

_FLUSH_EVERY_S = 0.2


class SessionLog:
    """Writes `events.jsonl` from a lossless bus subscription; its thread is the file's only writer,
    and on `close` it writes everything still queued before it closes the file."""

    def __init__(self, bus: EventBus, directory: Path) -> None:
        self.directory = prepare_log_dir(directory)
        self.path = self.directory / EVENTS_FILE
        self._bus = bus
        self._fd = open_session_file(self.directory, EVENTS_FILE)
        self._subscription: Subscription = bus.subscribe("log", maxsize=0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kame-log")
        self._offset = 0
        self.written = 0
        self.error: LogWriteError | None = None
        """Why the log stopped writing (disk full); None while all went out."""

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        deprioritize_current_thread()
        try:
            while not self._stop.is_set():
                try:
                    event = self._subscription.queue.get(timeout=_FLUSH_EVERY_S)
                except queue.Empty:
                    continue
                self._write([event, *self._subscription.drain()])
        finally:
            self._bus.unsubscribe(self._subscription)
            self._write(self._subscription.drain())
            if self.error is None:
                try:
                    os.fsync(self._fd)
                except OSError as err:
                    self._fail(err)
            os.close(self._fd)

    def _write(self, events: list[Event]) -> None:
        if not events or self.error is not None:
            return
        data = encode_events(with_session_marks(events))
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError as err:
            # Cut back to the last whole line: truncating frees blocks, so it works on a full disk.
            with contextlib.suppress(OSError):  # nothing more can be done; the error below says it
                os.ftruncate(self._fd, self._offset)
            self._fail(err)
            return
        self._offset += len(data)
        self.written += len(events)

    def _fail(self, err: OSError) -> None:
        if self.error is None:
            self.error = LogWriteError(
                f"session log {self.path} could not be written ({err.strerror}): free disk space or choose "
                f"another --log-dir; it holds the {self.written} events written before the error"
            )

    def close(self, timeout: float = 2.0) -> None:
        """Ask the writer to finish (it writes all that is queued, then closes the file) and wait."""
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(timeout)
        else:
            os.close(self._fd)
