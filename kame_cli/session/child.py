"""One child process of a session, seen from its supervisor: spawn, link, stop, exit status.

A `ChildProcess` is a fresh interpreter (`python -m MODULE --fd N`, CUDA-safe like
multiprocessing's `spawn`) in its own process group, so a Ctrl-C in the terminal reaches the
supervisor alone, which then stops its children in order. It talks over a `Link` (the socket on
descriptor N), keeps the last lines of its stderr (a library's warnings would break the panel;
those lines explain a death), and calls `on_gone(child)` once when the peer is gone.

Public names, kept stable for every supervisor (`kame talk`'s, `kame serve`'s):
- `ChildProcess(role, module, setup, on_message, on_gone, *, attempt, pass_fds, frame_limit, launch)`:
  the running child; `link` to send to it; `stop(timeout)` asks it to end with `Stop` and kills it
  after `timeout`; `kill()`; `returncode`, `exit_reason()`, `last_error_line()`, `expected_end`;
- `ChildSpec`: what a launcher starts (role, module, setup message, attempt, descriptors, frame bound);
- `Launcher`: how a process and its wire come to be; `launch_module` is the real one (a subprocess and
  a socket pair); a test passes its own (a thread and an in-memory wire) and keeps everything else real.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import IO, Any, Protocol

from kame_cli.events import ProcessRole
from kame_cli.session.link import Link, Wire
from kame_cli.session.wire import Stop

STDERR_LINES = 20
_REAP_S = 2.0  # after its wire closed, a child has this long to exit before its status is read
_KILL_WAIT_S = 5.0
_STDERR_DRAIN_S = 0.5  # a grandchild holding the pipe open must not hold up the news of a death


@dataclass(frozen=True)
class ChildSpec:
    """What to start: `module` runs `serve_child`; `setup` is the first message it receives."""

    role: ProcessRole
    module: str
    setup: Any
    attempt: int = 1
    """1 for the first process of a role; 2 for the back-end's one restart."""
    pass_fds: tuple[int, ...] = ()
    """Open descriptors the child inherits (the log's WAV files)."""
    frame_limit: int = 0
    """Audio frames the link may hold for the child before it drops them (0: lossless)."""


class ProcessHandle(Protocol):
    """The part of `subprocess.Popen` a supervisor uses."""

    @property
    def pid(self) -> int: ...

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def kill(self) -> None: ...


Launcher = Callable[[ChildSpec], tuple[ProcessHandle, Wire, Iterable[bytes] | None]]
"""Starts a child: its process, the supervisor's end of its wire, and its stderr (None: not kept)."""


def child_env() -> dict[str, str]:
    """This environment, with this checkout first on PYTHONPATH: a child runs `python -m` this
    kame, wherever it was started from."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


def launch_module(spec: ChildSpec) -> tuple[ProcessHandle, Wire, IO[bytes] | None]:
    """The real launcher: `python -m spec.module --fd N` with this checkout on its PYTHONPATH."""
    ours, theirs = socket.socketpair()
    env = child_env()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", spec.module, "--fd", str(theirs.fileno())],
            pass_fds=(theirs.fileno(), *spec.pass_fds),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
            env=env,
        )
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    return process, Connection(ours.detach()), process.stderr


def exit_reason(code: int | None) -> str:
    """A process's exit status in words: "exit status 1", "killed by SIGKILL", "still running"."""
    if code is None:
        return "still running"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exit status {code}"


class ChildProcess:
    """A running child: its link (messages to `on_message`, on its reader thread), its stderr's last
    lines, and `on_gone(self)` called once when it is gone (exited, killed, or closed its end)."""

    def __init__(
        self,
        role: ProcessRole,
        module: str,
        setup: Any,
        on_message: Callable[[Any], None],
        on_gone: Callable[[ChildProcess], None],
        *,
        attempt: int = 1,
        pass_fds: tuple[int, ...] = (),
        frame_limit: int = 0,
        launch: Launcher = launch_module,
    ) -> None:
        spec = ChildSpec(role, module, setup, attempt, pass_fds, frame_limit)
        self.spec = spec
        self.role = role
        self.attempt = attempt
        self.expected_end = False
        """True once the supervisor asked it to end (or killed it): its end is not a death."""
        self.stderr_tail: deque[str] = deque(maxlen=STDERR_LINES)
        self.process, wire, stderr = launch(spec)
        self.pid = self.process.pid
        self._gone_once = threading.Lock()
        self._on_gone = on_gone
        self.link = Link(wire, role, on_message, self._gone, frame_limit=frame_limit)
        self._stderr_reader: threading.Thread | None = None
        if stderr is not None:
            self._stderr_reader = threading.Thread(
                target=self._read_stderr, args=(stderr,), name=f"kame-{role}-stderr", daemon=True
            )
            self._stderr_reader.start()
        self.link.start()
        self.link.send(setup)

    def _read_stderr(self, stderr: Iterable[bytes]) -> None:
        for raw in stderr:
            line = raw.decode(errors="replace").rstrip()
            if line:
                self.stderr_tail.append(line)

    def _gone(self) -> None:
        if self._gone_once.acquire(blocking=False):
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=_REAP_S)
            if self._stderr_reader is not None:
                # Its last lines explain a death: read them to the pipe's end before anyone asks.
                self._stderr_reader.join(_STDERR_DRAIN_S)
            self._on_gone(self)

    @property
    def returncode(self) -> int | None:
        """Its exit status once it exited (negative: the signal that killed it), else None."""
        return self.process.poll()

    def exit_reason(self) -> str:
        return exit_reason(self.returncode)

    def last_error_line(self) -> str:
        """The last stderr line that is not a traceback's indented detail ("" if none)."""
        for line in reversed(self.stderr_tail):
            if not line.startswith(" "):
                return line
        return ""

    def stop(self, timeout: float) -> None:
        """Ask it to end (`Stop`: it closes its files first); after `timeout` kill it. Returns once it
        has exited (no orphan)."""
        self.expected_end = True
        self.link.send(Stop())
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """End it now (SIGKILL) and reap it."""
        self.expected_end = True
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=_KILL_WAIT_S)
