"""The session's supervisor: starts the front-end and back-end processes and routes between them.

Processes, and the state each one alone writes:
- the front-end process (`frontend_proc`) owns the model, the oracle stream, the audio source and
  sinks and the real-time loop; nothing else runs in its interpreter;
- the back-end process (`backend_proc`, niceness 10) owns the STT recognizer, the conversation and
  the LLM streams;
- this process (the CLI's) owns the session log, the view and the children's lives. It is the hub:
  frames and the front-end's words go to the back-end, oracle commands to the front-end, and every
  event to the bus (log, panel). Its reader threads only move messages.

The supervisor's life is a `Phase` (`session.phases`): LOADING, STARTING, RUNNING, DRAINING, then
STOPPING and DONE, or FAILED on the way; `_move_to` is the one place that changes it, and refuses a
move the life cycle does not allow. Each child's messages go through one `Dispatch` table
(`session.dispatch`) to a handler per message type. Children are `ChildProcess`es
(`session.child`), started through a `Launcher`, so a test can run this supervisor over in-memory
wires with scripted children and keep everything else real.

Faults: a back-end that dies is replaced once, and the voice goes on meanwhile; a front-end that
dies ends the session with one line (exit 1), with the files complete up to then.

Public names: `Session` (`launch`, `wait_ready`, `start`, `wait_input_end`, `finish`, `stop`,
`failure`, `phase`), `SessionPlan`, `ReportedFailure`, `FRONTEND_MODULE`, `BACKEND_MODULE`; and,
for the callers that imported it from here, `ChildProcess` (now in `session.child`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeVar, get_args

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
    Retrieval,
    SessionSummary,
    StepTiming,
    ToolCallFinished,
    ToolCallStarted,
)
from kame_cli.session.child import ChildProcess, Launcher, launch_module
from kame_cli.session.dispatch import Dispatch
from kame_cli.session.phases import ChildState, Phase, check_move
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
    SttFlushed,
    UserFrame,
)

FRONTEND_MODULE = "kame_cli.session.frontend_proc"
BACKEND_MODULE = "kame_cli.session.backend_proc"
_FRONTEND_CLOSE_S = 0.8  # the front-end closes its files within this, or is killed
_BACKEND_CLOSE_S = 0.5
_BACKEND_GO_S = 30.0
_BACKEND_START_S = 120.0
_BACKEND_RESTARTS = 1
_STT_FRAME_QUEUE = 25  # frames (2 s) held for a back-end that stalls before they are dropped
_POLL_S = 0.05
_EVENT_TYPES: tuple[type, ...] = get_args(Event)

_Numbered = TypeVar(
    "_Numbered",
    OracleRequestStarted,
    OracleChunk,
    OracleFinished,
    OracleReset,
    OracleAppend,
    OracleClear,
    Retrieval,
    ToolCallStarted,
    ToolCallFinished,
)
_NumberedEvent = TypeVar(
    "_NumberedEvent",
    OracleRequestStarted,
    OracleChunk,
    OracleFinished,
    Retrieval,
    ToolCallStarted,
    ToolCallFinished,
)
_NumberedCommand = TypeVar("_NumberedCommand", OracleAppend, OracleClear)


class ReportedFailure(KameError):
    """A failure a child process reported in one line, with the exit code it chose."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


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
    """The running session, seen from the supervisor.

    The caller's thread drives it: `launch`, `wait_ready`, `start`, then `wait_input_end`/`finish`
    (a file) or a stop signal, and `stop`. The links' reader threads only route messages and change
    the state under one condition variable, which the caller's waits watch.
    """

    def __init__(
        self, plan: SessionPlan, bus: EventBus, clock: SessionClock, *, launch: Launcher = launch_module
    ) -> None:
        self.plan = plan
        self.bus = bus
        self.clock = clock
        self.counts = _Counts()
        self.frontend_info: dict[str, Any] = {}
        self.api_base: str | None = None
        self.notices: list[str] = []
        self._launch = launch
        self._cond = threading.Condition()
        self._phase = Phase.LOADING
        self._failure: KameError | None = None
        self._frontend: ChildProcess | None = None
        self._frontend_state = ChildState.LOADING
        self._frontend_closed: Closed | None = None
        self._backend: ChildProcess | None = None
        self._backend_state = ChildState.LOADING
        self._backend_stats: dict[str, int] = {}
        self._draining: set[str] = {"frontend", "stt"}
        """What the end of the input still waits for: the front-end's last steps, the STT's last turn."""
        self._generation_base = 0
        self._last_generation = 0
        self._last_reset: int | None = None
        self._from_frontend = self._frontend_routes()
        self._from_backend = self._backend_routes()

    # --- phases -----------------------------------------------------------------------------------

    @property
    def phase(self) -> Phase:
        return self._phase

    def _move_to(self, phase: Phase) -> None:
        """The one place the phase changes (the caller holds `_cond`); wakes every waiter."""
        check_move(self._phase, phase)
        self._phase = phase
        self._cond.notify_all()

    def _fail(self, failure: KameError) -> None:
        """The session cannot go on (the caller holds `_cond`); the first failure is the one told."""
        if self._phase.live:
            self._failure = failure
            self._move_to(Phase.FAILED)

    @contextlib.contextmanager
    def _changing(self) -> Iterator[None]:
        with self._cond:
            yield
            self._cond.notify_all()

    # --- start ------------------------------------------------------------------------------------

    def launch(self) -> None:
        """Start both children; they load their models in parallel."""
        p = self.plan
        self._frontend = self._spawn("frontend", FRONTEND_MODULE, p.frontend, pass_fds=p.pass_fds)
        for fd in p.pass_fds:
            os.close(fd)  # the front-end holds them now: its copy is the only writer
        if p.backend is not None:
            with self._cond:
                self._backend = self._spawn_backend(1)

    def _spawn(self, role: ProcessRole, module: str, setup: Any, **how: Any) -> ChildProcess:
        routes = self._from_frontend if role == "frontend" else self._from_backend
        child = ChildProcess(role, module, setup, routes, self._child_gone, launch=self._launch, **how)
        self.bus.publish(ProcessStarted(self.clock.now(), role, child.pid, child.attempt))
        return child

    def _spawn_backend(self, attempt: int) -> ChildProcess:
        # Under `_cond`: the new child's Ready waits until it is the session's back-end.
        assert self.plan.backend is not None
        setup = dataclasses.replace(self.plan.backend, attempt=attempt)
        limit = 0 if self.plan.frontend.input.fast else _STT_FRAME_QUEUE
        self._backend_state = ChildState.LOADING
        return self._spawn("backend", BACKEND_MODULE, setup, attempt=attempt, frame_limit=limit)

    def wait_ready(self, stop: threading.Event) -> bool:
        """Wait until both children loaded; False if `stop` was set first; raises a load failure."""
        while True:
            with self._cond:
                self._cond.wait_for(
                    lambda: stop.is_set() or self._phase is Phase.FAILED or self._all_ready(), 0.1
                )
                self._raise_if_failed()
                if self._all_ready():
                    return True
            if stop.is_set():
                return False

    def _all_ready(self) -> bool:
        frontend = self._frontend_state is ChildState.READY
        return frontend and (self.plan.backend is None or self._backend_state is ChildState.READY)

    def _raise_if_failed(self) -> None:
        if self._phase is Phase.FAILED and self._failure is not None:
            raise self._failure

    def start(self, stop: threading.Event) -> None:
        """Start the back-end's parts, then the front-end's audio: from now on the user is heard."""
        with self._cond:
            self._raise_if_failed()
            self._move_to(Phase.STARTING)
            backend = self._backend
        if backend is not None:
            self._go_backend(backend, stop)
        with self._cond:
            self._raise_if_failed()
            self._move_to(Phase.RUNNING)
        self.bus.publish(BackendStatus(self.clock.now(), "session", "ok", "started"))
        assert self._frontend is not None
        self._frontend.link.send(Go())

    def _go_backend(self, child: ChildProcess, stop: threading.Event) -> bool:
        """Tell a loaded back-end to go; True once it runs (False: stopped, failed, or too slow)."""
        child.link.send(Go(self.frontend_info.get("tokenizer_proto"), self.api_base))
        deadline = time.monotonic() + _BACKEND_GO_S
        with self._cond:
            while self._backend_state is not ChildState.RUNNING and child is self._backend:
                if stop.is_set() or not self._phase.live or time.monotonic() >= deadline:
                    break
                self._cond.wait(_POLL_S)
            return child is self._backend and self._backend_state is ChildState.RUNNING

    # --- messages from the front-end (its link's reader thread) ---------------------------------

    def _frontend_routes(self) -> Dispatch:
        return (
            Dispatch()
            .on_each(_EVENT_TYPES, self.bus.publish)
            .on(UserFrame, self._user_frame)
            .on(StepTiming, self._step_timing)
            .on(DeadlineMiss, self._deadline_miss)
            .on(FramesDropped, self._frames_dropped)
            .on(FrontendText, self._frontend_text)
            .on(Ready, self._frontend_ready)
            .on(EndOfInput, self._input_ended)
            .on(FrontendDone, self._frontend_done)
            .on(Failure, self._frontend_failure)
            .on(Notice, self._notice)
            .on(Closed, self._frontend_closed_files)
        )

    def _running_backend(self) -> ChildProcess | None:
        backend = self._backend
        return backend if self._backend_state is ChildState.RUNNING else None

    def _user_frame(self, frame: UserFrame) -> None:
        backend = self._running_backend()
        if backend is None or not backend.link.send_frame(frame):
            self.counts.stt_frames_lost += 1

    def _step_timing(self, event: StepTiming) -> None:
        self.counts.steps = event.step + 1
        self.bus.publish(event)

    def _deadline_miss(self, event: DeadlineMiss) -> None:
        self.counts.deadline_misses += 1
        self.bus.publish(event)

    def _frames_dropped(self, event: FramesDropped) -> None:
        self.counts.dropped_frames = event.total
        self.bus.publish(event)

    def _frontend_text(self, event: FrontendText) -> None:
        self.bus.publish(event)
        backend = self._running_backend()
        if backend is not None:
            backend.link.send(event)

    def _frontend_ready(self, message: Ready) -> None:
        with self._changing():
            self.frontend_info = message.info
            self._frontend_state = ChildState.READY

    def _input_ended(self, message: EndOfInput) -> None:
        with self._changing():
            if self._phase is Phase.RUNNING:
                self._move_to(Phase.DRAINING)
            backend = self._running_backend()
            if backend is not None:
                backend.link.send(message)
            else:
                self._draining.discard("stt")

    def _frontend_done(self, message: FrontendDone) -> None:
        with self._changing():
            self._draining.discard("frontend")

    def _frontend_failure(self, message: Failure) -> None:
        with self._changing():
            self._fail(ReportedFailure(message.message, message.exit_code))

    def _notice(self, message: Notice) -> None:
        with self._changing():
            self.notices.append(message.message)
            print(f"kame: {message.message}", file=sys.stderr, flush=True)

    def _frontend_closed_files(self, message: Closed) -> None:
        with self._changing():
            self._frontend_closed = message

    # --- messages from the back-end (its link's reader thread) ----------------------------------

    def _backend_routes(self) -> Dispatch:
        return (
            Dispatch()
            .on_each(_EVENT_TYPES, self.bus.publish)
            .on_each(_NumberedEvent.__constraints__, self._oracle_event)
            .on(Notice, self._notice)  # [knowledge] the index's progress while the back-end loads
            .on(OracleReset, self._oracle_reset)
            .on_each((OracleAppend, OracleClear), self._oracle_command)
            .on(Ready, self._backend_ready)
            .on(Running, self._backend_running)
            .on(SttFlushed, self._stt_flushed)
            .on(Failure, self._backend_failure)
            .on(Closed, self._backend_closed)
        )

    def _rebase(self, message: _Numbered) -> _Numbered:
        # A restarted back-end counts generations from 1 again; keep them unique in the session.
        generation = message.generation + self._generation_base
        self._last_generation = max(self._last_generation, generation)
        return dataclasses.replace(message, generation=generation) if self._generation_base else message

    def _oracle_event(self, event: _NumberedEvent) -> None:
        self.bus.publish(self._rebase(event))

    def _oracle_reset(self, command: OracleReset) -> None:
        command = self._rebase(command)
        self._last_reset = command.generation
        self._to_frontend(command)

    def _oracle_command(self, command: _NumberedCommand) -> None:
        self._to_frontend(self._rebase(command))

    def _to_frontend(self, command: OracleReset | OracleAppend | OracleClear) -> None:
        if self._frontend is not None:
            self._frontend.link.send(command)

    def _backend_ready(self, message: Ready) -> None:
        with self._changing():
            self._backend_state = ChildState.READY

    def _backend_running(self, message: Running) -> None:
        with self._changing():
            self._backend_state = ChildState.RUNNING

    def _stt_flushed(self, message: SttFlushed) -> None:
        with self._changing():
            self._draining.discard("stt")

    def _backend_failure(self, message: Failure) -> None:
        with self._changing():
            if self._phase in (Phase.LOADING, Phase.STARTING):
                self._fail(ReportedFailure(message.message, message.exit_code))
                return
        # The audio never stops for a back-end: its failure is a status, not the end.
        self.bus.publish(BackendStatus(self.clock.now(), "backend", "error", message.message))

    def _backend_closed(self, message: Closed) -> None:
        with self._changing():
            self._backend_stats = dict(message.stats)

    # --- faults -----------------------------------------------------------------------------------

    def _child_gone(self, child: ChildProcess) -> None:
        code = child.returncode
        expected = child.expected_end or (child.role == "frontend" and self._frontend_closed is not None)
        reason = child.exit_reason()
        self.bus.publish(ProcessEnded(self.clock.now(), child.role, child.pid, code, expected, reason))
        if expected:
            return
        if child.role == "frontend":
            self._frontend_died(child, reason)
        else:
            self._backend_died(child, reason)

    def _frontend_died(self, child: ChildProcess, reason: str) -> None:
        detail = _last_words(child)
        self.bus.publish(
            BackendStatus(self.clock.now(), "frontend", "error", f"front-end process died ({reason})")
        )
        with self._changing():
            self._frontend_state = ChildState.GONE
            if self._phase.started:
                self._fail(
                    SessionError(
                        f"the front-end process died ({reason}{detail}): the session ended; the output WAV "
                        "and the log hold everything up to then"
                    )
                )
            else:
                self._fail(RuntimeFailure(f"the front-end process died while loading ({reason}{detail})"))

    def _backend_died(self, child: ChildProcess, reason: str) -> None:
        with self._changing():
            if child is not self._backend:
                return
            self._backend_state = ChildState.GONE
            phase = self._phase
            if phase in (Phase.LOADING, Phase.STARTING):
                self._fail(
                    RuntimeFailure(f"the back-end process died while loading ({reason}{_last_words(child)})")
                )
                return
            if phase is Phase.DRAINING:
                self._draining.discard("stt")  # nothing more will come of the audio it had
        if not phase.started:
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
            if not self._phase.started:
                return
            self._generation_base = self._last_generation
            child = self._backend = self._spawn_backend(self.counts.restarts + 1)
            deadline = time.monotonic() + _BACKEND_START_S
            self._cond.wait_for(
                lambda: (
                    self._backend_state is not ChildState.LOADING
                    or not self._phase.started
                    or child.returncode is not None
                    or time.monotonic() > deadline
                ),
                _BACKEND_START_S,
            )
            ready = self._backend_state is ChildState.READY and self._phase.started
        if ready and self._go_backend(child, threading.Event()):
            self.bus.publish(
                BackendStatus(
                    self.clock.now(), "backend", "ok", f"back-end process restarted (pid {child.pid})"
                )
            )

    # --- the caller's questions ------------------------------------------------------------------

    def failure(self) -> KameError | None:
        """What ended the session on its own: the front-end died or failed, or the input broke."""
        return self._failure

    def wait_input_end(self, timeout: float | None = None) -> bool:
        """True once the file input was read to its end (a microphone never ends so), or the session
        failed."""
        with self._cond:
            return self._cond.wait_for(lambda: self._phase is not Phase.RUNNING, timeout)

    def finish(self, interrupt: threading.Event, timeout: float = 60.0) -> None:
        """End of file: the front-end steps what it holds (output matches input), the STT closes the
        user's last turn; then everything stops. `interrupt` (a signal) cuts the wait short."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not interrupt.is_set() and self._phase.live and time.monotonic() < deadline:
                if not self._draining:
                    break
                self._cond.wait(_POLL_S)
        self.stop()

    def stop(self) -> None:
        """Stop both children (the front-end closes its files first), reap them, publish the summary and
        `stopped`; idempotent. A file that could not be finished is raised after that."""
        with self._cond:
            if self._phase.stopping:
                return
            stopped_from = self._phase
            self._move_to(Phase.STOPPING)
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
        closed = self._frontend_closed
        self.bus.publish(self._summary(closed))
        killed = frontend is not None and closed is None and stopped_from.started
        message = "stopped" if not killed else "stopped (the front-end did not close in time: killed)"
        self.bus.publish(BackendStatus(self.clock.now(), "session", "ok", message))
        with self._cond:
            self._move_to(Phase.DONE)
        if closed is not None and closed.failures:
            first = closed.failures[0]
            raise ReportedFailure(first.message, first.exit_code)

    def _summary(self, closed: Closed | None) -> SessionSummary:
        stats = dict(closed.stats) if closed is not None else {}
        c = self.counts
        return SessionSummary(
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


def _last_words(child: ChildProcess) -> str:
    last = child.last_error_line()
    return f"; its last words: {last[:200]}" if last else ""
