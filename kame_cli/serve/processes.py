"""The supervisor's side of `kame serve`'s child processes: the front-end host and the back-ends.

The host (`serve.host`) loads the front-end once. Each session gets a back-end process of its own
(`session.backend_proc`, the same one `kame talk` runs: STT, conversation, oracle producer), so
nothing but model weights is shared between users. Loading one takes seconds (the STT model and
LiteLLM's import), so one is kept loaded ahead as a spare: a session takes it and the next spare
starts loading at once.

Callbacks here run on the links' reader threads; they only hand messages on.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from kame_cli.errors import RuntimeFailure
from kame_cli.serve.wire import HostSetup
from kame_cli.session.runtime import ChildProcess
from kame_cli.session.wire import BackendSetup, Closed, Failure, Ready

_HOST_CLOSE_S = 0.8
_BACKEND_CLOSE_S = 0.5
_STT_FRAME_QUEUE = 25
"""Frames (2 s) held for a back-end that stalls before they are dropped (and counted), as in `kame talk`."""


class FrontendHost:
    """The host process, seen from the supervisor: `wait_ready`, `send`, and who gets its messages."""

    def __init__(
        self, setup: HostSetup, on_message: Callable[[Any], None], on_gone: Callable[[], None]
    ) -> None:
        self.info: dict[str, Any] = {}
        self.failure: str | None = None
        self.closed = False
        self._ready = threading.Event()
        self._on_message = on_message
        self._on_gone = on_gone
        self.child = ChildProcess("frontend", "kame_cli.serve.host", setup, self._route, self._gone)

    def _route(self, message: Any) -> None:
        if isinstance(message, Ready):
            self.info = message.info
            self._ready.set()
        elif isinstance(message, Failure) and not self._ready.is_set():
            self.failure = message.message
            self._ready.set()
        elif isinstance(message, Closed):
            self.closed = True
        else:
            self._on_message(message)

    def _gone(self, child: ChildProcess) -> None:
        if not self._ready.is_set():
            last = child.last_error_line()
            self.failure = (
                self.failure or f"the front-end process died while loading ({last[:200] or 'no message'})"
            )
            self._ready.set()
        if not child.expected_end:
            self._on_gone()

    def wait_ready(self, timeout: float) -> None:
        """Block until the model is loaded; `RuntimeFailure` (one line) if it failed or took too long."""
        if not self._ready.wait(timeout):
            raise RuntimeFailure(f"the front-end did not load within {timeout:.0f} s")
        if self.failure is not None:
            raise RuntimeFailure(self.failure)

    def send(self, message: Any) -> None:
        self.child.link.send(message)

    def send_frame(self, message: Any) -> bool:
        return self.child.link.send_frame(message)

    def stop(self) -> None:
        self.child.stop(_HOST_CLOSE_S)


class Backend:
    """One session's back-end process; `route` is set to the session that owns it."""

    def __init__(self, setup: BackendSetup) -> None:
        self.route: Callable[[Any], None] | None = None
        self.on_gone: Callable[[], None] | None = None
        self.ready = threading.Event()
        self.failure: str | None = None
        self.clock_origin = setup.clock_origin
        self.child = ChildProcess(
            "backend",
            "kame_cli.session.backend_proc",
            setup,
            self._route,
            self._gone,
            frame_limit=_STT_FRAME_QUEUE,
        )

    def _route(self, message: Any) -> None:
        if isinstance(message, Ready):
            self.ready.set()
            return
        if isinstance(message, Failure) and not self.ready.is_set():
            self.failure = message.message
            self.ready.set()
            return
        route = self.route
        if route is not None:
            route(message)

    def _gone(self, child: ChildProcess) -> None:
        if not self.ready.is_set():
            self.failure = self.failure or "the back-end process died while loading"
            self.ready.set()
        on_gone = self.on_gone
        if on_gone is not None and not child.expected_end:
            on_gone()

    @property
    def alive(self) -> bool:
        return self.child.returncode is None and self.failure is None

    def stop(self) -> None:
        self.child.stop(_BACKEND_CLOSE_S)


class BackendPool:
    """Keeps one back-end loaded ahead; `take` hands it out and starts loading the next."""

    def __init__(self, setup: BackendSetup | None) -> None:
        self._setup = setup
        self._lock = threading.Lock()
        self._spare: Backend | None = None
        self._closed = False

    def fill(self) -> None:
        with self._lock:
            if self._setup is not None and self._spare is None and not self._closed:
                self._spare = Backend(self._setup)

    def take(self) -> Backend | None:
        """The spare back-end (loaded or still loading), or None with no back-end configured."""
        with self._lock:
            spare, self._spare = self._spare, None
        if spare is not None and not spare.alive and spare.ready.is_set():
            spare.stop()
            spare = None
        if spare is None and self._setup is not None and not self._closed:
            spare = Backend(self._setup)
        self.fill()
        return spare

    def wait_spare(self, timeout: float) -> None:
        """Block until the spare back-end has loaded (so that a session can start at once);
        `RuntimeFailure` (one line) if it failed."""
        with self._lock:
            spare = self._spare
        if spare is None:
            return
        if not spare.ready.wait(timeout):
            raise RuntimeFailure(f"the speech recognizer did not load within {timeout:.0f} s")
        if spare.failure is not None:
            raise RuntimeFailure(spare.failure)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            spare, self._spare = self._spare, None
        if spare is not None:
            spare.stop()


def deprioritize_llm_server() -> None:
    """The local llama.cpp server (the offline profile's), below the front-end, as in `kame talk`:
    its bursts of generation must not take a core from the real-time loop."""
    import contextlib

    import psutil

    from kame_cli.priority import LLM_SERVER_NICENESS, deprioritize_process_tree

    for child in psutil.Process().children():
        with contextlib.suppress(psutil.Error):
            if "kame_cli.backends.oracle.llama_child" in " ".join(child.cmdline()):
                deprioritize_process_tree(child.pid, LLM_SERVER_NICENESS)
