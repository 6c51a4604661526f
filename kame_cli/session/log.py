"""Opt-in session log: every event as one JSON line on the session clock, lossless, user-only files."""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import threading
from pathlib import Path
from typing import IO

from kame_cli.bus import EventBus, Subscription
from kame_cli.errors import ConfigError
from kame_cli.events import Event
from kame_cli.priority import deprioritize_current_thread

_FLUSH_EVERY_S = 0.2


def event_record(event: Event) -> dict[str, object]:
    """The JSON object written for one event: its type name plus its fields."""
    record: dict[str, object] = {"type": type(event).__name__}
    for field in dataclasses.fields(event):
        value = getattr(event, field.name)
        record[field.name] = list(value) if isinstance(value, tuple) else value
    return record


def prepare_log_dir(path: Path) -> Path:
    """Create the log folder readable by the user only (an existing folder keeps its mode: the files
    in it are 0600); one line of error if that is impossible."""
    try:
        if not path.is_dir():
            path.mkdir(parents=True, mode=0o700)
        if not os.access(path, os.W_OK):
            raise PermissionError(13, "not writable")
    except OSError as err:
        raise ConfigError(
            f"--log-dir {path}: cannot create it ({err.strerror}); choose a writable folder"
        ) from err
    return path


def open_private(path: Path, mode: str = "w") -> IO[str]:
    """Open a text file created with mode 0600 (the log may hold what the user said)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    return open(fd, mode, encoding="utf-8")


class SessionLog:
    """Writes `events.jsonl` from a lossless bus subscription; its thread is the file's only writer,
    and on `close` it writes everything still queued before it closes the file."""

    def __init__(self, bus: EventBus, directory: Path) -> None:
        self.directory = prepare_log_dir(directory)
        self.path = self.directory / "events.jsonl"
        self._bus = bus
        self._subscription: Subscription = bus.subscribe("log", maxsize=0)
        self._file = open_private(self.path)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kame-log")
        self.written = 0

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        deprioritize_current_thread()
        try:
            while not self._stop.is_set():
                try:
                    event = self._subscription.queue.get(timeout=_FLUSH_EVERY_S)
                except queue.Empty:
                    self._file.flush()
                    continue
                self._write(event)
                for more in self._subscription.drain():
                    self._write(more)
                self._file.flush()
        finally:
            self._bus.unsubscribe(self._subscription)
            for event in self._subscription.drain():
                self._write(event)
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()

    def _write(self, event: Event) -> None:
        self._file.write(json.dumps(event_record(event), ensure_ascii=False) + "\n")
        self.written += 1

    def close(self, timeout: float = 2.0) -> None:
        """Ask the writer to finish (it writes all that is queued, then closes the file) and wait."""
        self._stop.set()
        self._thread.join(timeout)
