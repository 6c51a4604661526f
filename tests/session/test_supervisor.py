"""The supervisor's phases and routing, driven by scripted children over in-memory wires.

Everything but the children is real: `Session`, `ChildProcess`, `Link`, the dispatch tables, the
bus and the events; the children are scripts that speak the wire protocol (`tests/session/fakes.py`).
The same paths run end to end, with real processes and models, in the `test_talk_*` files.
"""

from __future__ import annotations

import os
import queue
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kame_cli import events as ev
from kame_cli.audio_io.aec_wiring import EchoSpec
from kame_cli.backends.oracle.config import PolicyConfig, PromptConfig
from kame_cli.backends.stt.config import SttConfig
from kame_cli.bus import EventBus
from kame_cli.clock import SessionClock
from kame_cli.engine.config import FrontendConfig
from kame_cli.errors import EXIT_BAD_INPUT, EXIT_FAILURE
from kame_cli.session import wire
from kame_cli.session.dispatch import Dispatch
from kame_cli.session.options import InputSpec, OutputSpec
from kame_cli.session.phases import TRANSITIONS, Phase, PhaseError, check_move
from kame_cli.session.runtime import ReportedFailure, Session, SessionPlan
from kame_cli.session.talk import StopRequest
from tests.session.fakes import FakeLauncher, Peer, Script, until_stop

FRAMES = 5
WAIT_S = 10.0


# --- scripted children --------------------------------------------------------------------------


def frontend(
    *,
    frames: int = FRAMES,
    ends: bool = True,
    pause: threading.Event | None = None,
    dies: bool = False,
    ready: bool = True,
    failure: wire.Failure | None = None,
) -> Script:
    """A front-end: loads, waits for Go, steps `frames` frames (waiting on `pause` halfway), then
    ends its input (a file) and serves until Stop; or dies, or fails, as asked."""

    def script(peer: Peer) -> int:
        assert isinstance(peer.recv(), wire.FrontendSetup)
        if failure is not None:
            peer.send(failure)
            until_stop(peer)
            peer.send(wire.Closed())
            return 0
        if not ready:
            until_stop(peer)  # still loading when the stop came
            peer.send(wire.Closed())
            return 0
        peer.send(wire.Ready("frontend", {"tokenizer_proto": b"tokens", "device": "cpu"}))
        if isinstance(peer.recv_until(wire.Go, wire.Stop), wire.Stop):
            peer.send(wire.Closed())
            return 0
        for index in range(frames):
            if index == frames // 2 and pause is not None:
                assert pause.wait(WAIT_S)
            peer.send(ev.StepTiming(0.08 * index, index, 1.0, 2.0, 1.0, 4.0))
            peer.send(wire.UserFrame(index, bytes(8)))
            peer.send(ev.FrontendText(0.08 * index, index, f"w{index}"))
        if dies:
            return -signal.SIGKILL  # no goodbye: the supervisor learns it from the closed wire
        if ends:
            peer.send(wire.EndOfInput(frames))
            peer.send(wire.FrontendDone(frames))
        until_stop(peer)
        peer.send(wire.Closed((), {"steps": frames, "deadline_misses": 0, "dropped_frames": 0}))
        return 0

    return script


def backend(
    *,
    dies_after: int | None = None,
    loaded: threading.Event | None = None,
    flush: threading.Event | None = None,
) -> Script:
    """A back-end: loads, runs on Go, answers the front-end's first words with an oracle, flushes
    on the end of input (once `flush` is set, if given); dies (SIGKILL) after `dies_after` frames
    if asked."""

    def script(peer: Peer) -> int:
        assert isinstance(peer.recv(), wire.BackendSetup)
        peer.send(wire.Ready("backend"))
        if loaded is not None:
            loaded.set()
        if isinstance(peer.recv_until(wire.Go, wire.Stop), wire.Stop):
            peer.send(wire.Closed())
            return 0
        peer.send(wire.Running())
        frames = answered = 0
        while True:
            message = peer.recv()
            if isinstance(message, wire.UserFrame):
                frames += 1
                if frames == dies_after:
                    return -signal.SIGKILL
            elif isinstance(message, ev.FrontendText) and not answered:
                answered = 1
                peer.send(ev.OracleReset(1))
            elif isinstance(message, wire.EndOfInput):
                assert flush is None or flush.wait(WAIT_S)
                peer.send(wire.SttFlushed())
            elif isinstance(message, wire.Stop):
                peer.send(wire.Closed((), {"stt_dropped_frames": 0, "stt_decodes_skipped": 0}))
                return 0

    return script


# --- the session under test ---------------------------------------------------------------------


class Run:
    """A Session over a FakeLauncher, with every published event collected."""

    def __init__(self, launcher: FakeLauncher, *, with_backend: bool = True) -> None:
        self.launcher = launcher
        self.bus = EventBus()
        self._events = self.bus.subscribe("test", maxsize=0)
        self.seen: list[ev.Event] = []
        clock = SessionClock()
        setup = wire.FrontendSetup(
            frontend=FrontendConfig(model="random:tiny", device="cpu"),
            clock_origin=clock.origin,
            input=InputSpec(file=Path("question.wav")),
            output=OutputSpec(speaker=False),
            echo=EchoSpec(),
            input_wav_fd=None,
            output_wav_fd=None,
            max_lag_ms=None,
            step_delay_ms=0.0,
            realtime=False,
            frames_to_backend=with_backend,
            frame_queue=0,
        )
        back = wire.BackendSetup(SttConfig(), None, PolicyConfig(), PromptConfig(), clock.origin, False, 1)
        plan = SessionPlan(setup, back if with_backend else None)
        self.session = Session(plan, self.bus, clock, launch=launcher)

    def wait_for(self, match: Callable[[Any], bool]) -> Any:
        """The first published event that matches, waiting for it to come."""
        while True:
            found = next((e for e in self.seen if match(e)), None)
            if found is not None:
                return found
            try:
                self.seen.append(self._events.queue.get(timeout=WAIT_S))
            except queue.Empty:
                raise AssertionError("no such event was published") from None

    def events(self) -> list[ev.Event]:
        self.seen.extend(self._events.drain())
        return self.seen

    def statuses(self, component: str) -> list[str]:
        return [
            e.message for e in self.events() if isinstance(e, ev.BackendStatus) and e.component == component
        ]

    def received(self, role: str, attempt: int = 1) -> list[Any]:
        return self.launcher.processes(role)[attempt - 1].peer.received

    def exit_codes(self) -> list[int | None]:
        return [process.wait(WAIT_S) for _, process in self.launcher.started]


def run_until_ready(run: Run) -> Session:
    session = run.session
    session.launch()
    assert session.phase is Phase.LOADING
    assert session.wait_ready(threading.Event())
    return session


# --- tests --------------------------------------------------------------------------------------


def test_a_file_session_loads_runs_drains_and_stops_in_order() -> None:
    run = Run(FakeLauncher(frontend=[frontend()], backend=[backend()]))
    session = run_until_ready(run)
    assert session.frontend_info["device"] == "cpu"
    session.start(threading.Event())
    assert session.phase is Phase.RUNNING
    assert session.wait_input_end(WAIT_S)
    assert session.phase is Phase.DRAINING
    session.finish(threading.Event(), timeout=WAIT_S)
    assert session.phase is Phase.DONE and session.failure() is None

    # The back-end heard every frame, the words and the end of input; its tokenizer came with Go.
    heard = run.received("backend")
    assert [m.index for m in heard if isinstance(m, wire.UserFrame)] == list(range(FRAMES))
    assert [m.text for m in heard if isinstance(m, ev.FrontendText)] == [f"w{i}" for i in range(FRAMES)]
    assert any(isinstance(m, wire.EndOfInput) for m in heard)
    assert next(m for m in heard if isinstance(m, wire.Go)).tokenizer_proto == b"tokens"
    # The oracle command went to the front-end; both children were asked to stop and exited 0.
    assert ev.OracleReset(1) in run.received("frontend")
    assert all(isinstance(run.received(role)[-1], wire.Stop) for role in ("frontend", "backend"))
    assert run.exit_codes() == [0, 0]

    events = run.events()
    assert [(e.role, e.attempt) for e in events if isinstance(e, ev.ProcessStarted)] == [
        ("frontend", 1),
        ("backend", 1),
    ]
    assert all(e.expected for e in events if isinstance(e, ev.ProcessEnded))
    assert run.statuses("session") == ["started", "stopped"]
    summary = next(e for e in events if isinstance(e, ev.SessionSummary))
    assert summary.steps == FRAMES and summary.backend_restarts == 0 and summary.stt_dropped_frames == 0
    assert isinstance(events[-1], ev.BackendStatus) and events[-1].message == "stopped"


def test_the_end_of_input_waits_for_the_stt_to_close_the_users_last_turn() -> None:
    flush = threading.Event()
    run = Run(FakeLauncher(frontend=[frontend()], backend=[backend(flush=flush)]))
    session = run_until_ready(run)
    session.start(threading.Event())
    assert session.wait_input_end(WAIT_S)
    finishing = threading.Thread(target=session.finish, args=(threading.Event(), WAIT_S))
    finishing.start()
    run.wait_for(lambda e: isinstance(e, ev.StepTiming) and e.step == FRAMES - 1)
    assert session.phase is Phase.DRAINING and finishing.is_alive()  # the STT has not flushed yet
    flush.set()
    finishing.join(WAIT_S)
    assert not finishing.is_alive() and session.phase is Phase.DONE and session.failure() is None
    heard = run.received("backend")
    assert [type(m) for m in heard[-2:]] == [wire.EndOfInput, wire.Stop]


def test_a_backend_that_dies_is_replaced_once_and_the_voice_goes_on() -> None:
    resume = threading.Event()
    launcher = FakeLauncher(
        frontend=[frontend(frames=8, pause=resume)], backend=[backend(dies_after=2), backend()]
    )
    run = Run(launcher)
    session = run_until_ready(run)
    session.start(threading.Event())
    ended = run.wait_for(lambda e: isinstance(e, ev.ProcessEnded) and e.role == "backend")
    assert not ended.expected and ended.reason == "killed by SIGKILL"
    run.wait_for(
        lambda e: isinstance(e, ev.BackendStatus) and e.message.startswith("back-end process restarted")
    )
    assert session.phase is Phase.RUNNING and session.failure() is None
    resume.set()
    assert session.wait_input_end(WAIT_S)
    session.finish(threading.Event(), timeout=WAIT_S)
    assert session.phase is Phase.DONE and session.failure() is None

    assert [s.attempt for s, _ in launcher.started if s.role == "backend"] == [1, 2]
    assert run.received("backend", 2)[0].attempt == 2  # its setup says which attempt it is
    # The dead producer's pending answer was withdrawn; the new one's generations follow the old.
    to_frontend = [m for m in run.received("frontend") if isinstance(m, ev.OracleReset | ev.OracleClear)]
    assert to_frontend == [ev.OracleReset(1), ev.OracleClear(1), ev.OracleReset(2)]
    # The front-end never stopped: the second back-end heard the frames after the restart.
    later = [m.index for m in run.received("backend", 2) if isinstance(m, wire.UserFrame)]
    assert later and later[-1] == 7
    assert run.statuses("stt") == ["back-end process died (killed by SIGKILL): restarting it"]
    summary = next(e for e in run.events() if isinstance(e, ev.SessionSummary))
    assert summary.backend_restarts == 1 and summary.steps == 8


def test_a_frontend_that_dies_ends_the_session_with_exit_1() -> None:
    run = Run(FakeLauncher(frontend=[frontend(dies=True)], backend=[backend()]))
    session = run_until_ready(run)
    session.start(threading.Event())
    assert session.wait_input_end(WAIT_S)  # a failure ends the wait for the input's end too
    failure = session.failure()
    assert session.phase is Phase.FAILED and failure is not None
    assert failure.exit_code == EXIT_FAILURE
    assert str(failure).startswith("the front-end process died (killed by SIGKILL)")
    session.stop()
    assert session.phase is Phase.DONE
    assert run.statuses("frontend") == ["front-end process died (killed by SIGKILL)"]
    assert run.statuses("session") == ["started", "stopped"]
    assert isinstance(run.received("backend")[-1], wire.Stop)  # the back-end was stopped in order


def test_a_stop_signal_while_loading_stops_the_children_quietly() -> None:
    loaded = threading.Event()
    run = Run(FakeLauncher(frontend=[frontend(ready=False)], backend=[backend(loaded=loaded)]))
    stop = StopRequest()

    def interrupt() -> None:
        assert loaded.wait(WAIT_S)  # the back-end has loaded, the front-end still loads
        os.kill(os.getpid(), signal.SIGINT)

    with stop.on_signals():
        run.session.launch()
        threading.Thread(target=interrupt).start()
        assert run.session.wait_ready(stop.event) is False
    assert run.session.phase is Phase.LOADING and run.session.failure() is None
    run.session.stop()
    assert run.session.phase is Phase.DONE
    assert run.exit_codes() == [0, 0]
    assert all(isinstance(run.received(role)[-1], wire.Stop) for role in ("frontend", "backend"))
    assert run.statuses("session") == ["stopped"]


def test_a_load_failure_is_raised_with_the_childs_exit_code() -> None:
    bad = wire.Failure("bad checkpoint: give a KAME or Moshi checkpoint", EXIT_BAD_INPUT)
    run = Run(FakeLauncher(frontend=[frontend(failure=bad)], backend=[backend()]))
    run.session.launch()
    with pytest.raises(ReportedFailure) as caught:
        run.session.wait_ready(threading.Event())
    assert str(caught.value) == bad.message and caught.value.exit_code == EXIT_BAD_INPUT
    assert run.session.phase is Phase.FAILED
    with pytest.raises(ReportedFailure):
        run.session.start(threading.Event())  # a failed session does not start
    run.session.stop()
    assert run.session.phase is Phase.DONE


def test_a_frontend_that_does_not_close_in_time_is_killed_and_said_so() -> None:
    def deaf(peer: Peer) -> int:
        peer.recv()  # its setup
        peer.send(wire.Ready("frontend", {}))
        peer.recv_until(wire.Go)
        threading.Event().wait(WAIT_S)  # it never answers Stop
        return 0

    run = Run(FakeLauncher(frontend=[deaf]), with_backend=False)
    session = run_until_ready(run)
    session.start(threading.Event())
    session.stop()
    assert run.exit_codes() == [-signal.SIGKILL]
    assert run.statuses("session") == ["started", "stopped (the front-end did not close in time: killed)"]
    session.stop()  # idempotent
    assert run.statuses("session")[-1].startswith("stopped (")


def test_the_phases_move_only_forward() -> None:
    check_move(Phase.LOADING, Phase.STARTING)
    for phase in set(Phase) - {Phase.STOPPING, Phase.DONE}:
        check_move(phase, Phase.STOPPING)  # a stop is always possible until it has begun
    for current, new in [
        (Phase.RUNNING, Phase.LOADING),
        (Phase.DRAINING, Phase.RUNNING),
        (Phase.LOADING, Phase.RUNNING),
        (Phase.FAILED, Phase.RUNNING),
        (Phase.DONE, Phase.STOPPING),
    ]:
        with pytest.raises(PhaseError, match=f"from {current.name} to {new.name}"):
            check_move(current, new)
    assert set(TRANSITIONS) == set(Phase) and not TRANSITIONS[Phase.DONE]


def test_dispatch_routes_by_type_then_base_class_then_the_fallback() -> None:
    class Base:
        pass

    class Child(Base):
        pass

    got: list[tuple[str, object]] = []
    route = (
        Dispatch(lambda m: got.append(("other", m)))
        .on(Base, lambda m: got.append(("base", m)))
        .on(int, lambda m: got.append(("int", m)))
    )
    child, base = Child(), Base()
    for message in (3, child, base, "text"):
        route(message)
    assert got == [("int", 3), ("base", child), ("base", base), ("other", "text")]
    route.on(Child, lambda m: got.append(("child", m)))  # a later, nearer handler wins
    route(child)
    assert got[-1] == ("child", child)
