"""Scripted children for the supervisor's unit tests: no subprocess, no model.

Only the wire is fake: `wire_pair()` gives two ends of an in-memory pipe with `Connection`'s
three calls (every message is pickled on the way, as on the socket), and a `ScriptedProcess`
is a thread that plays a child's side of the protocol. The supervisor runs unchanged on top:
real `Session`, `ChildProcess`, `Link`, `Dispatch`, bus and events.
"""

from __future__ import annotations

import itertools
import pickle
import queue
import subprocess
import threading
from collections.abc import Callable
from typing import Any

from kame_cli.session.child import ChildSpec
from kame_cli.session.wire import Stop

_EOF = object()
_PIDS = itertools.count(900_001)


class MemoryWire:
    """One end of an in-memory pipe: `recv` raises EOFError once either end closed."""

    def __init__(self, inbox: queue.SimpleQueue[Any], outbox: queue.SimpleQueue[Any]) -> None:
        self._inbox = inbox
        self._outbox = outbox
        self._closed = False

    def send(self, obj: Any) -> None:
        if self._closed:
            raise OSError("the wire is closed")
        self._outbox.put(pickle.dumps(obj))

    def recv(self) -> Any:
        item = self._inbox.get()
        if item is _EOF:
            self._inbox.put(_EOF)  # every later recv sees the end too
            raise EOFError
        return pickle.loads(item)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._outbox.put(_EOF)
            self._inbox.put(_EOF)


def wire_pair() -> tuple[MemoryWire, MemoryWire]:
    a: queue.SimpleQueue[Any] = queue.SimpleQueue()
    b: queue.SimpleQueue[Any] = queue.SimpleQueue()
    return MemoryWire(a, b), MemoryWire(b, a)


class Peer:
    """The child's end, as a script sees it: what arrived is kept in `received`."""

    def __init__(self, wire: MemoryWire) -> None:
        self.wire = wire
        self.received: list[Any] = []

    def send(self, message: Any) -> None:
        self.wire.send(message)

    def recv(self) -> Any:
        message = self.wire.recv()
        self.received.append(message)
        return message

    def recv_until(self, *kinds: type) -> Any:
        """The next message of one of `kinds` (others are kept in `received` and passed over)."""
        while True:
            message = self.recv()
            if isinstance(message, kinds):
                return message


Script = Callable[[Peer], int]
"""A child's life: gets its Peer (the setup is its first message), returns its exit status
(negative: as if killed by that signal, with no goodbye)."""


class ScriptedProcess:
    """A `ProcessHandle` whose life is a script on a thread; `kill` ends it at once (-9)."""

    def __init__(self, script: Script, wire: MemoryWire) -> None:
        self.pid = next(_PIDS)
        self.peer = Peer(wire)
        self._script = script
        self._code: int | None = None
        self._lock = threading.Lock()
        self._done = threading.Event()
        threading.Thread(target=self._run, name=f"fake-child-{self.pid}", daemon=True).start()

    def _run(self) -> None:
        try:
            code = self._script(self.peer)
        except (EOFError, OSError):
            code = 1  # the supervisor went away: serve_child's exit
        self._end(code)

    def _end(self, code: int) -> None:
        with self._lock:
            if self._code is None:
                self._code = code
        self.peer.wire.close()
        self._done.set()

    def poll(self) -> int | None:
        return self._code

    def wait(self, timeout: float | None = None) -> int:
        if not self._done.wait(timeout):
            raise subprocess.TimeoutExpired(f"fake child {self.pid}", timeout or 0.0)
        assert self._code is not None
        return self._code

    def kill(self) -> None:
        self._end(-9)


class FakeLauncher:
    """A `Launcher`: each start of a role runs that role's next script."""

    def __init__(self, **scripts: list[Script]) -> None:
        self._scripts = {role: list(s) for role, s in scripts.items()}
        self.started: list[tuple[ChildSpec, ScriptedProcess]] = []

    def __call__(self, spec: ChildSpec) -> tuple[ScriptedProcess, MemoryWire, None]:
        ours, theirs = wire_pair()
        process = ScriptedProcess(self._scripts[spec.role].pop(0), theirs)
        self.started.append((spec, process))
        return process, ours, None

    def processes(self, role: str) -> list[ScriptedProcess]:
        return [p for spec, p in self.started if spec.role == role]


def until_stop(peer: Peer) -> None:
    """Serve until the supervisor says Stop."""
    peer.recv_until(Stop)
