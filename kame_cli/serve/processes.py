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
import time
from collections.abc import Callable
from typing import Any

from kame_cli.errors import RuntimeFailure
from kame_cli.serve.wire import HostSetup
from kame_cli.session.child import Launcher, launch_module
from kame_cli.session.runtime import ChildProcess
from kame_cli.session.wire import BackendSetup, Closed, Failure, Ready

_HOST_CLOSE_S = 0.8
_BACKEND_CLOSE_S = 0.5
_STT_FRAME_QUEUE = 25
"""Frames (2 s) held for a back-end that stalls before they are dropped (and counted), as in `kame talk`."""


class FrontendHost:
    """The host process, seen from the supervisor: `wait_ready`, `send`, and who gets its messages."""

    def __init__(
        self,
        setup: HostSetup,
        on_message: Callable[[Any], None],
        on_gone: Callable[[], None],
        launch: Launcher = launch_module,
    ) -> None:
        self.info: dict[str, Any] = {}
        self.failure: str | None = None
        self.closed = False
        self._ready = threading.Event()
        self._on_message = on_message
        self._on_gone = on_gone
        self.child = ChildProcess(
            "frontend", "kame_cli.serve.host", setup, self._route, self._gone, launch=launch
        )

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

    def __init__(
        self,
        setup: BackendSetup,
        on_stopped: Callable[[], None] | None = None,
        launch: Launcher = launch_module,
    ) -> None:
        self.route: Callable[[Any], None] | None = None
        self.on_gone: Callable[[], None] | None = None
        self.ready = threading.Event()
        self.failure: str | None = None
        self.clock_origin = setup.clock_origin
        self._on_stopped = on_stopped
        self.child = ChildProcess(
            "backend",
            "kame_cli.session.backend_proc",
            setup,
            self._route,
            self._gone,
            frame_limit=_STT_FRAME_QUEUE,
            launch=launch,
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
        if self._on_stopped is not None:
            self._on_stopped()


class BackendPool:
    """Keeps a loaded back-end ahead for every free session slot (one at least): sessions admitted
    together all start at once. A session that had to wait for a back-end to load would wait without
    reading its WebSocket (tens of seconds on a loaded CPU), and the server's own heartbeat closes
    such a connection. `take` hands a spare out; the pool loads the next ones at once."""

    def __init__(
        self,
        setup: BackendSetup | None,
        slots: int = 1,
        make: Callable[[BackendSetup, Callable[[], None]], Backend] = Backend,
    ) -> None:
        self._setup = setup
        self._slots = max(1, slots)
        self._make = make
        self._lock = threading.Lock()
        self._spares: list[Backend] = []
        self._taken: list[Backend] = []
        self._closed = False

    def _wanted(self) -> int:
        """Spares to hold now (under the lock): one per slot no live session's back-end holds."""
        self._taken = [backend for backend in self._taken if backend.alive]
        return max(1, self._slots - len(self._taken))

    def fill(self) -> None:
        """Start loading spares up to one per free slot; also called when a session's back-end stops."""
        with self._lock:
            setup = self._setup
            while setup is not None and not self._closed and len(self._spares) < self._wanted():
                self._spares.append(self._make(setup, self.fill))

    def take(self) -> Backend | None:
        """A spare back-end (the oldest loaded one, else the oldest still loading), or None with no
        back-end configured."""
        with self._lock:
            spare = next((b for b in self._spares if b.ready.is_set()), None)
            if spare is None and self._spares:
                spare = self._spares[0]
            if spare is not None:
                self._spares.remove(spare)
        if spare is not None and not spare.alive and spare.ready.is_set():
            spare.stop()
            spare = None
        with self._lock:
            if spare is None and self._setup is not None and not self._closed:
                spare = self._make(self._setup, self.fill)
            if spare is not None:
                self._taken.append(spare)
        self.fill()
        return spare

    def wait_spare(self, timeout: float) -> None:
        """Block until every spare back-end has loaded (so that as many sessions as there are slots
        can start at once); `RuntimeFailure` (one line) if one failed."""
        with self._lock:
            spares = list(self._spares)
        deadline = time.monotonic() + timeout
        for spare in spares:
            if not spare.ready.wait(max(0.0, deadline - time.monotonic())):
                raise RuntimeFailure(f"the speech recognizer did not load within {timeout:.0f} s")
            if spare.failure is not None:
                raise RuntimeFailure(spare.failure)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            spares, self._spares = self._spares, []
        # Together: each may take its whole close timeout (one still importing does not hear Stop).
        stopping = [threading.Thread(target=spare.stop, name="kame-spare-stop") for spare in spares]
        for thread in stopping:
            thread.start()
        for thread in stopping:
            thread.join()


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
