"""The session's supervisor: starts the front-end and back-end processes and routes between them.

Processes, and the state each one alone writes:
- the front-end process (`frontend_proc`) owns the model, the oracle stream, the audio source and
  sinks and the real-time loop; nothing else runs in its interpreter;
- the back-end process (`backend_proc`, niceness 10) owns the STT recognizer, the conversation and
  the LLM streams;
- this process (the CLI's) owns the session log, the view and the children's lives. It is the hub:
  frames and the front-end's words go to the back-end, oracle commands to the front-end, and every
  event to the bus (log, panel). Its reader threads only move messages.

Faults: a back-end that dies is replaced once, and the voice goes on meanwhile; a front-end that
dies ends the session with one line (exit 1), with the files complete up to then.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from kame_cli.bus import EventBus
from kame_cli.clock import SessionClock
from kame_cli.errors import KameError, RuntimeFailure, SessionError
from kame_cli.events import (
    BackendStatus,
    DeadlineMiss,
    Event,
    FramesDropped,
    FrontendText,
    OracleAppend,
    OracleChunk,
    OracleClear,
    OracleFinished,
    OracleRequestStarted,
    OracleReset,
    ProcessEnded,
    ProcessRole,
    ProcessStarted,
    SessionSummary,
    StepTiming,
)
from kame_cli.session.link import Link
from kame_cli.session.wire import (
    BackendSetup,
    Closed,
    EndOfInput,
    Failure,
    FrontendDone,
    FrontendSetup,
    Go,
    Notice,
    Ready,
    Running,
    Stop,
    SttFlushed,
    UserFrame,
)

_STDERR_LINES = 20
_FRONTEND_CLOSE_S = 0.8  # the front-end closes its files within this, or is killed
_BACKEND_CLOSE_S = 0.5
_BACKEND_START_S = 120.0
_BACKEND_RESTARTS = 1
_STT_FRAME_QUEUE = 25  # frames (2 s) held for a back-end that stalls before they are dropped
_WITH_GENERATION = (OracleRequestStarted, OracleChunk, OracleFinished, OracleReset, OracleAppend, OracleClear)


class ReportedFailure(KameError):
    """A failure a child process reported in one line, with the exit code it chose."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _signal_name(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exit status {code}"


class ChildProcess:
    """One kame child: a fresh interpreter (`python -m MODULE --fd N`, CUDA-safe like `spawn`) in its
    own session, so a Ctrl-C in the terminal reaches the supervisor alone, which stops it in order."""

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
    ) -> None:
        self.role = role
        self.attempt = attempt
        self.expected_end = False
        self.closed: Closed | None = None
        self.stderr_tail: deque[str] = deque(maxlen=_STDERR_LINES)
        ours, theirs = socket.socketpair()
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", module, "--fd", str(theirs.fileno())],
                pass_fds=(theirs.fileno(), *pass_fds),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
                env=env,
            )
        finally:
            theirs.close()
        self.pid = self.process.pid
        self._gone_once = threading.Lock()
        self._on_gone = on_gone
        self.link = Link(Connection(ours.detach()), role, on_message, self._gone, frame_limit=frame_limit)
        self._stderr_thread = threading.Thread(
            target=self._read_stderr, name=f"kame-{role}-stderr", daemon=True
        )
        self._stderr_thread.start()
        self.link.start()
        self.link.send(setup)

    def _read_stderr(self) -> None:
        # Kept, not shown: a library's warnings would break the panel; the last lines explain a death.
        assert self.process.stderr is not None
        for raw in self.process.stderr:
            line = raw.decode(errors="replace").rstrip()
            if line:
                self.stderr_tail.append(line)

    def _gone(self) -> None:
        if self._gone_once.acquire(blocking=False):
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=2.0)
            self._on_gone(self)

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    def last_error_line(self) -> str:
        for line in reversed(self.stderr_tail):
            if not line.startswith(" "):
                return line
        return ""

    def stop(self, timeout: float) -> None:
        """Ask it to end; after `timeout` kill it. Returns once it has exited (no orphan)."""
        self.expected_end = True
        self.link.send(Stop())
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        self.expected_end = True
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5.0)


@dataclass
class SessionPlan:
    """What the supervisor starts: the two children's setups (no back-end: the front-end alone)."""

    frontend: FrontendSetup
    backend: BackendSetup | None
    pass_fds: tuple[int, ...] = ()


@dataclass
class _Counts:
    steps: int = 0
    deadline_misses: int = 0
    dropped_frames: int = 0
    stt_frames_lost: int = 0
    """Frames for the STT the supervisor could not deliver (no back-end running, or it stalled)."""
    restarts: int = 0


class Session:
    """The running session, seen from the supervisor."""

    def __init__(self, plan: SessionPlan, bus: EventBus, clock: SessionClock) -> None:
        self.plan = plan
        self.bus = bus
        self.clock = clock
        self.counts = _Counts()
        self.frontend_info: dict[str, Any] = {}
        self.api_base: str | None = None
        self.notices: list[str] = []
        self._cond = threading.Condition()
        self._frontend: ChildProcess | None = None
        self._backend: ChildProcess | None = None
        self._backend_live = False
        """The current back-end runs (Running received) and gets frames and words."""
        self._backend_ready = False
        self._load_failure: KameError | None = None
        self._fatal: KameError | None = None
        self._input_ended = False
        self._frontend_done = False
        self._stt_flushed = False
        self._started = False
        self._stopping = False
        self._stopped = False
        self._generation_base = 0
        self._last_generation = 0
        self._last_reset: int | None = None
        self._backend_stats: dict[str, int] = {}

    # --- start ------------------------------------------------------------------------------------

    def launch(self) -> None:
        """Start both children; they load their models in parallel."""
        p = self.plan
        self._frontend = self._spawn_frontend()
        for fd in p.pass_fds:
            os.close(fd)  # the front-end holds them now: its copy is the only writer
        if p.backend is not None:
            self._backend = self._spawn_backend(1)

    def _spawn_frontend(self) -> ChildProcess:
        child = ChildProcess(
            "frontend",
            "kame_cli.session.frontend_proc",
            self.plan.frontend,
            self._from_frontend,
            self._child_gone,
            pass_fds=self.plan.pass_fds,
        )
        self.bus.publish(ProcessStarted(self.clock.now(), "frontend", child.pid, 1))
        return child

    def _spawn_backend(self, attempt: int) -> ChildProcess:
        assert self.plan.backend is not None
        setup = dataclasses.replace(self.plan.backend, attempt=attempt)
        limit = 0 if self.plan.frontend.input.fast else _STT_FRAME_QUEUE
        child = ChildProcess(
            "backend",
            "kame_cli.session.backend_proc",
            setup,
            self._from_backend,
            self._child_gone,
            attempt=attempt,
            frame_limit=limit,
        )
        self.bus.publish(ProcessStarted(self.clock.now(), "backend", child.pid, attempt))
        return child

    def wait_ready(self, stop: threading.Event) -> bool:
        """Wait until both children loaded; False if `stop` was set first; raises a load failure."""
        while True:
            with self._cond:
                self._cond.wait_for(
                    lambda: stop.is_set() or self._load_failure is not None or self._all_ready(), 0.1
                )
                if self._load_failure is not None:
                    raise self._load_failure
                if self._all_ready():
                    return True
            if stop.is_set():
                return False

    def _all_ready(self) -> bool:
        return bool(self.frontend_info) and (self.plan.backend is None or self._backend_ready)

    def start(self, stop: threading.Event) -> None:
        """Start the back-end's parts, then the front-end's audio: from now on the user is heard."""
        if self._backend is not None:
            self._go_backend(self._backend, stop)
        with self._cond:
            self._started = True
        self.bus.publish(BackendStatus(self.clock.now(), "session", "ok", "started"))
        assert self._frontend is not None
        self._frontend.link.send(Go())

    def _go_backend(self, child: ChildProcess, stop: threading.Event) -> bool:
        child.link.send(Go(self.frontend_info.get("tokenizer_proto"), self.api_base))
        deadline = time.monotonic() + 30.0
        with self._cond:
            while not self._backend_live and child is self._backend and time.monotonic() < deadline:
                if stop.is_set() or self._stopping or self._load_failure is not None:
                    break
                self._cond.wait(0.05)
            if self._load_failure is not None and not self._started:
                raise self._load_failure
            return self._backend_live

    # --- messages ---------------------------------------------------------------------------------

    def _from_frontend(self, message: Any) -> None:
        if isinstance(message, UserFrame):
            backend = self._backend
            if not (self._backend_live and backend is not None and backend.link.send_frame(message)):
                self.counts.stt_frames_lost += 1
            return
        if isinstance(message, StepTiming | FrontendText | DeadlineMiss | FramesDropped):
            self._count(message)
            self.bus.publish(message)
            if isinstance(message, FrontendText) and self._backend_live and self._backend is not None:
                self._backend.link.send(message)
            return
        if isinstance(message, BackendStatus) or _is_event(message):
            self.bus.publish(message)
            return
        with self._cond:
            if isinstance(message, Ready):
                self.frontend_info = message.info
            elif isinstance(message, EndOfInput):
                self._input_ended = True
                if self._backend_live and self._backend is not None:
                    self._backend.link.send(message)
                else:
                    self._stt_flushed = True
            elif isinstance(message, FrontendDone):
                self._frontend_done = True
            elif isinstance(message, Failure):
                failure = ReportedFailure(message.message, message.exit_code)
                if self._started:
                    self._fatal = self._fatal or failure
                else:
                    self._load_failure = self._load_failure or failure
            elif isinstance(message, Notice):
                self.notices.append(message.message)
                print(f"kame: {message.message}", file=sys.stderr, flush=True)
            elif isinstance(message, Closed):
                assert self._frontend is not None
                self._frontend.closed = message
            self._cond.notify_all()

    def _count(self, event: Event) -> None:
        if isinstance(event, StepTiming):
            self.counts.steps = event.step + 1
        elif isinstance(event, DeadlineMiss):
            self.counts.deadline_misses += 1
        elif isinstance(event, FramesDropped):
            self.counts.dropped_frames = event.total

    def _from_backend(self, message: Any) -> None:
        if isinstance(message, _WITH_GENERATION):
            message = self._rebase(message)
            if isinstance(message, OracleReset | OracleAppend | OracleClear):
                if isinstance(message, OracleReset):
                    self._last_reset = message.generation
                if self._frontend is not None:
                    self._frontend.link.send(message)
                return
        if isinstance(message, BackendStatus) or _is_event(message):
            self.bus.publish(message)
            return
        with self._cond:
            if isinstance(message, Ready):
                self._backend_ready = True
            elif isinstance(message, Running):
                self._backend_live = True
            elif isinstance(message, SttFlushed):
                self._stt_flushed = True
            elif isinstance(message, Failure):
                failure = ReportedFailure(message.message, message.exit_code)
                if not self._started:
                    self._load_failure = self._load_failure or failure
                else:
                    # The audio never stops for a back-end: its failure is a status, not the end.
                    self.bus.publish(BackendStatus(self.clock.now(), "backend", "error", message.message))
            elif isinstance(message, Closed):
                self._backend_stats = dict(message.stats)
            self._cond.notify_all()

    def _rebase(self, message: Any) -> Any:
        # A restarted back-end counts generations from 1 again; keep them unique in the session.
        generation = message.generation + self._generation_base
        self._last_generation = max(self._last_generation, generation)
        return dataclasses.replace(message, generation=generation) if self._generation_base else message

    # --- faults -----------------------------------------------------------------------------------

    def _child_gone(self, child: ChildProcess) -> None:
        code = child.returncode
        expected = child.expected_end or (child.closed is not None and child.role == "frontend")
        reason = _signal_name(code)
        self.bus.publish(ProcessEnded(self.clock.now(), child.role, child.pid, code, expected, reason))
        if expected:
            return
        if child.role == "frontend":
            self._frontend_died(child, reason)
        else:
            self._backend_died(child, reason)

    def _frontend_died(self, child: ChildProcess, reason: str) -> None:
        last = child.last_error_line()
        detail = f"; its last words: {last[:200]}" if last else ""
        failure = SessionError(
            f"the front-end process died ({reason}{detail}): the session ended; the output WAV and the log "
            "hold everything up to then"
        )
        self.bus.publish(
            BackendStatus(self.clock.now(), "frontend", "error", f"front-end process died ({reason})")
        )
        with self._cond:
            if self._started:
                self._fatal = self._fatal or failure
            else:
                self._load_failure = self._load_failure or RuntimeFailure(
                    f"the front-end process died while loading ({reason}{detail})"
                )
            self._cond.notify_all()

    def _backend_died(self, child: ChildProcess, reason: str) -> None:
        with self._cond:
            if child is not self._backend:
                return
            self._backend_live = False
            self._backend_ready = False
            started, stopping = self._started, self._stopping
            if not started:
                last = child.last_error_line()
                detail = f"; its last words: {last[:200]}" if last else ""
                self._load_failure = self._load_failure or RuntimeFailure(
                    f"the back-end process died while loading ({reason}{detail})"
                )
                self._cond.notify_all()
                return
            if self._input_ended:
                self._stt_flushed = True  # nothing more will come of that audio
            self._cond.notify_all()
        if stopping:
            return
        if self._last_reset is not None and self._frontend is not None:
            # Withdraw what the dead producer's answer still had pending (better no oracle than half).
            self._frontend.link.send(OracleClear(self._last_reset))
        restart = self.counts.restarts < _BACKEND_RESTARTS
        then = "restarting it" if restart else "going on without STT and LLM"
        for component in ("backend", "stt", "llm"):
            self.bus.publish(
                BackendStatus(
                    self.clock.now(), component, "error", f"back-end process died ({reason}): {then}"
                )
            )
        if restart:
            self.counts.restarts += 1
            threading.Thread(target=self._restart_backend, name="kame-backend-restart", daemon=True).start()

    def _restart_backend(self) -> None:
        with self._cond:
            if self._stopping:
                return
            self._generation_base = self._last_generation
            child = self._backend = self._spawn_backend(self.counts.restarts + 1)
        never = threading.Event()
        deadline = time.monotonic() + _BACKEND_START_S
        with self._cond:
            self._cond.wait_for(
                lambda: (
                    self._backend_ready
                    or self._stopping
                    or child.returncode is not None
                    or time.monotonic() > deadline
                ),
                _BACKEND_START_S,
            )
            ready = self._backend_ready and not self._stopping
        if ready and self._go_backend(child, never):
            self.bus.publish(
                BackendStatus(
                    self.clock.now(), "backend", "ok", f"back-end process restarted (pid {child.pid})"
                )
            )

    # --- the caller's questions ------------------------------------------------------------------

    def failure(self) -> KameError | None:
        """What ended the session on its own: the front-end died or failed, or the input broke."""
        return self._fatal

    def wait_input_end(self, timeout: float | None = None) -> bool:
        """True once the file input was read to its end (a microphone never ends so)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._input_ended or self._fatal is not None, timeout)

    def finish(self, interrupt: threading.Event, timeout: float = 60.0) -> None:
        """End of file: the front-end steps what it holds (output matches input), the STT closes the
        user's last turn; then everything stops. `interrupt` (a signal) cuts the wait short."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not interrupt.is_set() and self._fatal is None and time.monotonic() < deadline:
                if self._frontend_done and self._stt_flushed:
                    break
                self._cond.wait(0.05)
        self.stop()

    def stop(self) -> None:
        """Stop both children (the front-end closes its files first), reap them, publish the summary and
        `stopped`; idempotent. A file that could not be finished is raised after that."""
        if self._stopped:
            return
        self._stopped = True
        with self._cond:
            self._stopping = True
            backend, frontend = self._backend, self._frontend
        stoppers = [
            threading.Thread(target=child.stop, args=(limit,), daemon=True)
            for child, limit in ((frontend, _FRONTEND_CLOSE_S), (backend, _BACKEND_CLOSE_S))
            if child is not None
        ]
        for thread in stoppers:
            thread.start()
        for thread in stoppers:
            thread.join()
        for child in (frontend, backend):
            if child is not None:
                child.link.wait_closed(1.0)  # its ProcessEnded is published before the summary
        closed = frontend.closed if frontend is not None else None
        stats = dict(closed.stats) if closed is not None else {}
        c = self.counts
        self.bus.publish(
            SessionSummary(
                self.clock.now(),
                steps=stats.get("steps", c.steps),
                deadline_misses=stats.get("deadline_misses", c.deadline_misses),
                dropped_frames=stats.get("dropped_frames", c.dropped_frames),
                stt_dropped_frames=self._backend_stats.get("stt_dropped_frames", 0)
                + stats.get("stt_frames_dropped", 0)
                + c.stt_frames_lost,
                stt_decodes_skipped=self._backend_stats.get("stt_decodes_skipped", 0),
                backend_restarts=c.restarts,
            )
        )
        killed = frontend is not None and closed is None and self._fatal is None and self._started
        message = "stopped" if not killed else "stopped (the front-end did not close in time: killed)"
        self.bus.publish(BackendStatus(self.clock.now(), "session", "ok", message))
        if closed is not None and closed.failures:
            first = closed.failures[0]
            raise ReportedFailure(first.message, first.exit_code)


def _is_event(message: Any) -> bool:
    from kame_cli import events

    return type(message).__module__ == events.__name__ and hasattr(message, "t")
