"""Session children forked from a preloaded template (`session.template_proc`), seen from the
requesting supervisor.

`Template.launch` is a `Launcher` (see `session.child`): the child it starts is a fork of the
template, in a session of its own, with its own link, stderr pipe and inherited descriptors, so
`ChildProcess` treats it as any child. Its exit status comes from the template, which is its parent
and reaps it. Where the template cannot serve (it refused, died, or is slow to answer), `launch`
starts a fresh interpreter instead: a child always starts.

A template has an owner (the process that started it: `kame serve`, `kame eval`, `kame bench tandem`,
the test suite); it ends when its owner closes it. `SharedTemplates` starts one per role listening in
a private folder and names that folder in `KAME_TEMPLATES` for the `kame talk` processes it runs;
`session_launcher` is how such a `kame talk` uses them, after checking the folder is its user's own.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from kame_cli.events import ProcessRole
from kame_cli.session.child import ChildSpec, Launcher, ProcessHandle, child_env, launch_module
from kame_cli.session.link import Wire
from kame_cli.session.template_proc import peer_uid, process_state

TEMPLATES_ENV = "KAME_TEMPLATES"
"""The folder of the templates a `kame talk` forks its children from (unset: fresh interpreters)."""
ROLES: tuple[ProcessRole, ...] = ("frontend", "backend")
_MODULE = "kame_cli.session.template_proc"
_FORK_REPLY_S = 5.0
_READY_S = 30.0
"""How long a launch waits for the template's imports before it starts a fresh interpreter."""
_ORPHAN_POLL_S = 0.2
_CLOSE_S = 0.3
_MAX_PACKET = 65536
_LISTEN_BACKLOG = 64


class _Forked:
    """A forked child's `ProcessHandle`: its exit status as the template reported it."""

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


class Template:
    """One template (started here with `start`, or reached with `connect`) and its replies;
    `launch(spec)` starts a child from it."""

    def __init__(self, role: ProcessRole) -> None:
        self.role = role
        self._ctrl: socket.socket | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()  # one request in flight at a time: its reply is the next pid
        self._ids = itertools.count(1)
        self._replies: dict[int, int | None] = {}
        self._replied = threading.Condition()
        self._codes: dict[int, int] = {}
        self._ended: dict[int, threading.Event] = {}
        self.ready = threading.Event()
        self.refused: str | None = None
        """Why the template does not serve (None while it does or is still importing)."""

    @property
    def pid(self) -> int | None:
        """The template process's pid when it was started here."""
        return None if self._process is None else self._process.pid

    def start(self, listener: socket.socket | None = None) -> None:
        """Start the template (accepting other processes' requests on `listener` too); it imports in
        the background (`ready` once it serves)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        fds = [theirs.fileno()] + ([] if listener is None else [listener.fileno()])
        args = ["--role", self.role, "--fd", str(fds[0])]
        if listener is not None:
            args += ["--listen-fd", str(fds[1])]
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", _MODULE, *args],
                pass_fds=fds,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,  # an import's warnings; a failure comes as `refused`
                start_new_session=True,
                env=child_env(),
            )
        finally:
            theirs.close()
        self._listen(ours)

    def connect(self, path: Path) -> bool:
        """Reach a template another process of this user started; False when none answers there."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            sock.connect(str(path))
            if peer_uid(sock) != os.getuid():
                raise PermissionError(f"{path}: served by another user")
        except OSError:
            sock.close()
            return False
        self._listen(sock)
        return True

    def _listen(self, ctrl: socket.socket) -> None:
        self._ctrl = ctrl
        threading.Thread(target=self._read, name=f"kame-{self.role}-template", daemon=True).start()

    def _read(self) -> None:
        assert self._ctrl is not None
        try:
            while True:
                try:
                    data = self._ctrl.recv(_MAX_PACKET)
                except OSError:
                    data = b""
                if not data:
                    break
                self._take(json.loads(data))
        except (ValueError, TypeError, KeyError):
            pass  # a reply this side cannot read: the template is treated as gone, never waited on
        finally:
            self._template_gone()

    def _take(self, message: dict[str, Any]) -> None:
        if "exit" in message:
            pid = int(message["exit"])
            self._codes[pid] = int(message["code"])
            self._ended.setdefault(pid, threading.Event()).set()
        elif "id" in message:  # a fork's pid, or why this request gets none
            forked = int(message["pid"]) if "pid" in message else None
            if forked is not None:
                # Before its exit, which the template sends after this reply: a new process, even
                # if an earlier one had the same pid.
                self._codes.pop(forked, None)
                self._ended[forked] = threading.Event()
            with self._replied:
                self._replies[int(message["id"])] = forked
                self._replied.notify_all()
        elif "refused" in message:
            self.refused = str(message["refused"])
            self.ready.set()
        elif message.get("ready"):
            self.ready.set()

    def _template_gone(self) -> None:
        # Its children were reparented: their statuses will not come. Each one still running is
        # told ended once it is gone, with the status a kill gives.
        self.refused = self.refused or "the template process ended"
        self.ready.set()
        with self._replied:
            self._replied.notify_all()
        threading.Thread(target=self._watch_orphans, name="kame-template-orphans", daemon=True).start()

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
        if self._ctrl is None:
            return launch_module(spec)
        self.ready.wait(_READY_S)  # the first spares: a fork after the imports beats a second import
        if not self.ready.is_set() or self.refused is not None:
            return launch_module(spec)
        try:
            cwd = os.getcwd()
        except OSError:  # the folder was removed: a fresh interpreter still starts in it
            return launch_module(spec)
        ours, theirs = socket.socketpair()
        read_end, write_end = os.pipe()
        pid = None
        try:
            request: dict[str, object] = {
                "module": spec.module,
                "fds": list(spec.pass_fds),
                "env": child_env(),
                "cwd": cwd,
                "python": sys.executable,
                "state": process_state(),
            }
            with self._lock:
                request["id"] = request_id = next(self._ids)
                fds = [theirs.fileno(), write_end, *spec.pass_fds]
                with contextlib.suppress(OSError):
                    socket.send_fds(self._ctrl, [json.dumps(request).encode()], fds)
                    pid = self._await_pid(request_id)
        except BaseException:  # Ctrl-C while waiting: a fork that came has its link closed, so it ends
            ours.close()
            os.close(read_end)
            raise
        finally:
            theirs.close()
            os.close(write_end)
        if pid is None:
            ours.close()
            os.close(read_end)
            return launch_module(spec)
        from multiprocessing.connection import Connection

        return _Forked(pid, self._ended[pid], self._codes), Connection(ours.detach()), open(read_end, "rb")

    def _await_pid(self, request_id: int) -> int | None:
        with self._replied:
            self._replied.wait_for(
                lambda: request_id in self._replies or self.refused is not None, _FORK_REPLY_S
            )
            return self._replies.pop(request_id, None)

    def close(self) -> None:
        """Let go of the template; one started here ends (the children it forked end with their
        sessions)."""
        if self._ctrl is not None:
            with contextlib.suppress(OSError):
                self._ctrl.shutdown(socket.SHUT_RDWR)
        if self._process is not None:
            try:
                self._process.wait(_CLOSE_S)
            except subprocess.TimeoutExpired:
                self._process.kill()  # it holds nothing: its children were stopped before
                self._process.wait()
        if self._ctrl is not None:
            self._ctrl.close()


class SharedTemplates:
    """A template per role, listening in a private folder (mode 0700) that `env` names for the
    `kame talk` processes this process runs; `close` ends them and removes the folder."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="kame-templates-"))
        self.templates: dict[ProcessRole, Template] = {}

    def start(self) -> SharedTemplates:
        for role in ROLES:
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            try:
                listener.bind(str(self.directory / f"{role}.sock"))
                listener.listen(_LISTEN_BACKLOG)
                template = Template(role)
                template.start(listener)
                self.templates[role] = template
            finally:
                listener.close()  # the template holds it now
        return self

    @property
    def env(self) -> dict[str, str]:
        return {TEMPLATES_ENV: str(self.directory)}

    def close(self) -> None:
        for template in self.templates.values():
            template.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> SharedTemplates:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def templates_for_children() -> Iterator[SharedTemplates | None]:
    """Shared templates, named in this process's environment (which the `kame talk` children it
    starts inherit) while the block runs; closed, and the variable restored, however it ends. Inside
    a process that already names trusted templates (a run started by another), those serve: None."""
    previous = os.environ.get(TEMPLATES_ENV)
    if trusted_directory(previous) is not None:
        yield None
        return
    with SharedTemplates() as shared:
        os.environ.update(shared.env)
        try:
            yield shared
        finally:
            if previous is None:
                os.environ.pop(TEMPLATES_ENV, None)
            else:
                os.environ[TEMPLATES_ENV] = previous


@contextlib.contextmanager
def without_templates() -> Iterator[None]:
    """Sessions run in this block start fresh interpreters, children of their supervisor (for the
    benches that find a session's processes among its descendants and measure their memory)."""
    previous = os.environ.pop(TEMPLATES_ENV, None)
    try:
        yield
    finally:
        if previous is not None:
            os.environ[TEMPLATES_ENV] = previous


def trusted_directory(value: str | None) -> Path | None:
    """The templates' folder named by `value` if it is this user's own and private (a folder, not a
    link, mode 0700); else None: another user could otherwise answer for a template."""
    if not value:
        return None
    try:
        info = os.lstat(value)
    except OSError:
        return None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) != 0o700:
        return None
    return Path(value)


class TemplateLauncher:
    """A `Launcher` for one session: each role's child from that role's template in `directory`,
    reached at the first launch; a fresh interpreter where none answers."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._templates: dict[ProcessRole, Template | None] = {}
        self._connecting = threading.Lock()  # `kame serve` launches from its pool's threads too

    def __call__(self, spec: ChildSpec) -> tuple[ProcessHandle, Wire, IO[bytes] | None]:
        with self._connecting:
            if spec.role not in self._templates:
                template: Template | None = Template(spec.role)
                assert template is not None
                if not template.connect(self.directory / f"{spec.role}.sock"):
                    template = None
                self._templates[spec.role] = template
            reached = self._templates[spec.role]
        return launch_module(spec) if reached is None else reached.launch(spec)

    def close(self) -> None:
        with self._connecting:
            templates = list(self._templates.values())
        for template in templates:
            if template is not None:
                template.close()


@contextlib.contextmanager
def session_launcher() -> Iterator[Launcher]:
    """How a `kame talk` starts its children: from the templates `KAME_TEMPLATES` names when that
    folder is trusted, else as fresh interpreters."""
    directory = trusted_directory(os.environ.get(TEMPLATES_ENV))
    if directory is None:
        yield launch_module
        return
    launcher = TemplateLauncher(directory)
    try:
        yield launcher
    finally:
        launcher.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
