"""The back-end template: one process that imports what every back-end imports, then forks a back-end
per request (`kame serve`'s sessions), so a session's back-end starts with LiteLLM, CTranslate2 and
faster-whisper already imported (seconds of CPU each time otherwise) and shares their pages.

It stays single-threaded, as a safe `fork` needs: no model is loaded, no thread started, CUDA never
touched (each back-end loads its STT after the fork). It refuses to serve when an import started a
thread anyway; the supervisor then starts back-ends as fresh interpreters.

Wire (a SOCK_SEQPACKET socket on `--fd N`, one JSON object per packet):
- supervisor -> template: `{"id": k, "module": M}` with two descriptors, the child's link socket and
  the write end of its stderr pipe; the child runs `M.main(["--fd", link])` in a session of its own;
- template -> supervisor: `{"ready": true}` once imported (or `{"refused": why}`), `{"id": k, "pid": p}`
  after each fork, `{"exit": p, "code": c}` when a child ended (`c` as `Popen.returncode` gives it).
The template ends when the supervisor closes its end; its children live on to their own ends.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import json
import os
import selectors
import signal
import socket
import sys
import threading
import traceback

_PR_SET_NAME = 15
_PRELOAD = (
    "numpy",
    "faster_whisper",
    "ctranslate2",
    "sentencepiece",
    "kame_cli.session.backend_proc",
    "kame_cli.backends.stt.worker",
    "kame_cli.backends.oracle.producer",
)


def _preload() -> str | None:
    """Import the back-end's modules; why the template cannot fork safely, or None."""
    from kame_cli.backends.oracle.llm import import_litellm

    for name in _PRELOAD:
        importlib.import_module(name)
    import_litellm()
    if threading.active_count() > 1:
        names = ", ".join(t.name for t in threading.enumerate() if t is not threading.main_thread())
        return f"an import started a thread ({names})"
    return None


def _send(ctrl: socket.socket, message: dict[str, object]) -> None:
    with contextlib.suppress(OSError):  # the supervisor is gone: the loop ends on its next read
        ctrl.send(json.dumps(message).encode())


def _name_process(name: str) -> None:
    """What `ps`, `top` and psutil's `name()` show for a forked back-end (its argv is the template's)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)


def _run_child(module: str, link_fd: int, stderr_fd: int, keep_out: list[int]) -> None:
    """In the forked child: a session of its own, the new stderr, then the module's `main`."""
    try:
        for fd in keep_out:
            os.close(fd)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        for target, source in ((0, null), (1, null), (2, stderr_fd)):
            os.dup2(source, target)
        os.close(null)
        os.close(stderr_fd)
        _name_process("kame-" + module.rsplit(".", 1)[-1].removesuffix("_proc"))
        importlib.import_module(module).main(["--fd", str(link_fd)])  # ends with os._exit
    except BaseException:  # the child's last lines explain its death to the supervisor
        traceback.print_exc()
        sys.stderr.flush()
    finally:
        os._exit(1)  # `main` ends the process itself; this is a failure before or in it


def _reap(ctrl: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _send(ctrl, {"exit": pid, "code": os.waitstatus_to_exitcode(status)})


def serve(ctrl: socket.socket) -> None:
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    os.set_blocking(wake_r, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so that the wake-up byte is written
    signal.set_wakeup_fd(wake_w)
    selector = selectors.DefaultSelector()
    selector.register(ctrl, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)
    while True:
        for key, _ in selector.select():
            if key.fileobj is not ctrl:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_r, 512)
                _reap(ctrl)
                continue
            try:
                data, fds, _, _ = socket.recv_fds(ctrl, 4096, 4)
            except OSError:
                data, fds = b"", []
            if not data:
                return
            request = json.loads(data)
            if len(fds) != 2:
                for fd in fds:
                    os.close(fd)
                continue
            link_fd, stderr_fd = fds
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _run_child(
                    request["module"], link_fd, stderr_fd, [ctrl.fileno(), wake_r, wake_w, selector.fileno()]
                )
            os.close(link_fd)
            os.close(stderr_fd)
            _send(ctrl, {"id": request["id"], "pid": pid})


def main(argv: list[str] | None = None) -> None:
    # Not deprioritized, unlike the back-ends it forks (each lowers itself first thing): it reaps
    # them, and a session's end waits for its report; it uses no CPU between forks.
    args = sys.argv[1:] if argv is None else argv
    ctrl = socket.socket(fileno=int(args[args.index("--fd") + 1]))
    try:
        refused = _preload()
    except Exception as err:  # any import failure: the supervisor falls back to fresh interpreters
        refused = f"{type(err).__name__}: {err}"
    if refused is not None:
        _send(ctrl, {"refused": refused})
        return
    _send(ctrl, {"ready": True})
    serve(ctrl)
    os._exit(0)  # tearing LiteLLM's module graph down would only delay the server's exit


if __name__ == "__main__":
    main()
