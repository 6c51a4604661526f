"""Back-ends forked from a preloaded template (`serve.preload_proc`), seen from the supervisor.

`Preloader.launch` is a `Launcher` (see `session.child`): the back-end it starts is a fork of the
template, in a session of its own, with its own link and stderr pipe, so `ChildProcess` treats it as
any child. Its exit status comes from the template, which is its parent and reaps it. Where the
template cannot serve (it refused, died, or is slow to answer), `launch` starts a fresh interpreter
instead: a back-end always starts.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import IO, Any

from kame_cli.session.child import ChildSpec, ProcessHandle, child_env, launch_module
from kame_cli.session.link import Wire

_MODULE = "kame_cli.serve.preload_proc"
_FORK_REPLY_S = 5.0
_READY_S = 30.0
"""How long a launch waits for the template's imports before it starts a fresh interpreter."""
_ORPHAN_POLL_S = 0.2
_CLOSE_S = 0.3
_MAX_PACKET = 4096


class _Forked:
    """A forked back-end's `ProcessHandle`: its exit status as the template reported it."""

    def __init__(self, pid: int, ended: threading.Event, codes: dict[int, int]) -> None:
        self._pid = pid
        self._ended = ended
        self._codes = codes

    @property
    def pid(self) -> int:
        return self._pid

    def poll(self) -> int | None:
        return self._codes.get(self._pid) if self._ended.is_set() else None

    def wait(self, timeout: float | None = None) -> int:
        if not self._ended.wait(timeout):
            raise subprocess.TimeoutExpired(f"pid {self._pid}", timeout or 0.0)
        return self._codes[self._pid]

    def kill(self) -> None:
        os.kill(self._pid, signal.SIGKILL)


class Preloader:
    """The template process and its replies; `launch(spec)` starts a back-end from it."""

    def __init__(self) -> None:
        self._ctrl: socket.socket | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()  # one request in flight at a time: its reply is the next pid
        self._ids = itertools.count(1)
        self._replies: dict[int, int] = {}
        self._replied = threading.Condition()
        self._codes: dict[int, int] = {}
        self._ended: dict[int, threading.Event] = {}
        self.ready = threading.Event()
        self.refused: str | None = None
        """Why the template does not serve (None while it does or is still importing)."""

    def start(self) -> None:
        """Start the template; it imports in the background (`ready` once it serves)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", _MODULE, "--fd", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,  # an import's warnings; a failure comes as `refused`
                start_new_session=True,
                env=child_env(),
            )
        finally:
            theirs.close()
        self._ctrl = ours
        threading.Thread(target=self._read, name="kame-preload-reader", daemon=True).start()

    def _read(self) -> None:
        assert self._ctrl is not None
        while True:
            try:
                data = self._ctrl.recv(_MAX_PACKET)
            except OSError:
                data = b""
            if not data:
                break
            message: dict[str, Any] = json.loads(data)
            if "exit" in message:
                pid = int(message["exit"])
                self._codes[pid] = int(message["code"])
                self._ended.setdefault(pid, threading.Event()).set()
            elif "pid" in message:
                with self._replied:
                    self._replies[int(message["id"])] = int(message["pid"])
                    self._replied.notify_all()
            elif "refused" in message:
                self.refused = str(message["refused"])
                self.ready.set()
            elif message.get("ready"):
                self.ready.set()
        self._template_gone()

    def _template_gone(self) -> None:
        # Its children were reparented: their statuses will not come. Each one still running is
        # told ended once it is gone, with the status a kill gives.
        self.refused = self.refused or "the template process ended"
        self.ready.set()
        with self._replied:
            self._replied.notify_all()
        threading.Thread(target=self._watch_orphans, name="kame-preload-orphans", daemon=True).start()

    def _watch_orphans(self) -> None:
        while True:
            waiting = [(pid, ev) for pid, ev in list(self._ended.items()) if not ev.is_set()]
            if not waiting:
                return
            for pid, ended in waiting:
                if not _alive(pid):
                    self._codes.setdefault(pid, -signal.SIGKILL)
                    ended.set()
            time.sleep(_ORPHAN_POLL_S)  # no one can tell us: a reparented child is polled

    def launch(self, spec: ChildSpec) -> tuple[ProcessHandle, Wire, IO[bytes] | None]:
        """A `Launcher`: a fork of the template when it serves, else a fresh interpreter."""
        if spec.pass_fds or self._ctrl is None:
            return launch_module(spec)
        self.ready.wait(_READY_S)  # the first spares: a fork after the imports beats a second import
        if not self.ready.is_set() or self.refused is not None:
            return launch_module(spec)
        ours, theirs = socket.socketpair()
        read_end, write_end = os.pipe()
        pid = None
        try:
            with self._lock:
                request_id = next(self._ids)
                packet = json.dumps({"id": request_id, "module": spec.module}).encode()
                with contextlib.suppress(OSError):
                    socket.send_fds(self._ctrl, [packet], [theirs.fileno(), write_end])
                    pid = self._await_pid(request_id)
        finally:
            theirs.close()
            os.close(write_end)
        if pid is None:
            ours.close()
            os.close(read_end)
            return launch_module(spec)
        from multiprocessing.connection import Connection

        self._ended.setdefault(pid, threading.Event())
        return _Forked(pid, self._ended[pid], self._codes), Connection(ours.detach()), open(read_end, "rb")

    def _await_pid(self, request_id: int) -> int | None:
        with self._replied:
            self._replied.wait_for(
                lambda: request_id in self._replies or self.refused is not None, _FORK_REPLY_S
            )
            return self._replies.pop(request_id, None)

    def close(self) -> None:
        """End the template (the back-ends it forked end with their sessions)."""
        if self._ctrl is not None:
            with contextlib.suppress(OSError):
                self._ctrl.shutdown(socket.SHUT_RDWR)
        if self._process is not None:
            try:
                self._process.wait(_CLOSE_S)
            except subprocess.TimeoutExpired:
                self._process.kill()  # it holds nothing: the back-ends were stopped before
                self._process.wait()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
