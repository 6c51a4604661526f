"""The back-end's CPU layout, read from /proc as the kernel applies it: under SCHED_IDLE while it
keeps up, lifted to niceness 10 while starved (`StarvationGuard`), at niceness 19 where the process
may not leave SCHED_IDLE; and a real STT that got no CPU for seconds catches up and transcribes."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kame_cli.priority import (
    BACKGROUND_NICENESS,
    FLOOR_NICENESS,
    GUARD_TRIP_S,
    LLM_SERVER_NICENESS,
    deprioritize_process_tree,
    threads_of,
)
from tests.session.conftest import write_wav
from tests.support.speech import concat, synthesize


def _placement(pid: int, tid: int) -> tuple[int, int]:
    """(policy, niceness) of one thread, from /proc/PID/task/TID/stat (fields 41 and 19)."""
    stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(stat[38]), int(stat[16])


class GuardChild:
    """tests/support/idle_guard_child.py, driven one line at a time."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.idle_guard_child", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.state = self._answer()

    def _answer(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line, f"the guard's child ended (exit {self.process.wait()})"
        return json.loads(line)

    def send(self, command: str) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        self.state = self._answer()
        return self.state

    def others(self) -> set[tuple[int, int]]:
        """(policy, niceness) of every thread but the guard's, from /proc/PID/task/*/stat."""
        pid, spared = self.process.pid, (self.state["guard_tid"], self.state["kept_tid"])
        return {_placement(pid, tid) for tid in threads_of(pid) if tid not in spared}

    def kept(self) -> tuple[int, int]:
        """(policy, niceness) of the thread the guard keeps out of SCHED_IDLE."""
        return _placement(self.process.pid, self.state["kept_tid"])

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        assert self.process.wait(timeout=30) == 0


@pytest.fixture
def guard_child(request: pytest.FixtureRequest) -> Iterator[GuardChild]:
    child = GuardChild(*request.param)
    try:
        yield child
    finally:
        if child.process.poll() is None:
            child.process.kill()
        child.process.wait()


@pytest.mark.parametrize("guard_child", [()], indirect=True)
def test_threads_idle_while_keeping_up_and_lifted_while_starved(guard_child: GuardChild) -> None:
    if not guard_child.state["reversible"]:
        # Without CAP_SYS_NICE, the floor layout is what this process gets (tested below).
        assert guard_child.others() == {(os.SCHED_OTHER, FLOOR_NICENESS)}
        return
    assert {policy for policy, _ in guard_child.others()} == {os.SCHED_IDLE}
    state = guard_child.send(f"lag {GUARD_TRIP_S + 1}")
    assert state["starved"] and state["trips"] == 1
    assert guard_child.others() == {(os.SCHED_OTHER, BACKGROUND_NICENESS)}
    # Between the two thresholds it stays lifted: no flapping at each check.
    assert guard_child.send("lag 1.0")["starved"]
    assert guard_child.others() == {(os.SCHED_OTHER, BACKGROUND_NICENESS)}
    assert not guard_child.send("lag 0.2")["starved"]
    assert guard_child.others() == {(os.SCHED_IDLE, BACKGROUND_NICENESS)}
    assert guard_child.kept()[0] == os.SCHED_OTHER
    # Told to stop: lifted for good, whatever the lag says (an idle process exits slowly when busy).
    guard_child.send("release")
    assert guard_child.send("lag 0")["starved"]
    assert guard_child.others() == {(os.SCHED_OTHER, BACKGROUND_NICENESS)}
    guard_child.close()


@pytest.mark.parametrize("guard_child", [("--unprivileged",)], indirect=True)
def test_without_privilege_the_threads_stay_at_the_floor(guard_child: GuardChild) -> None:
    # Leaving SCHED_IDLE needs CAP_SYS_NICE: a thread put there could starve for good.
    assert not guard_child.state["reversible"]
    assert guard_child.others() == {(os.SCHED_OTHER, FLOOR_NICENESS)}
    assert guard_child.send(f"lag {GUARD_TRIP_S + 1}")["starved"]
    assert guard_child.others() == {(os.SCHED_OTHER, FLOOR_NICENESS)}
    guard_child.close()


def test_a_starved_stt_is_lifted_catches_up_and_goes_back_to_idle(tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "q.wav", concat([0.3, synthesize("How many legs does a spider have?"), 2.5]))
    child = GuardChild("--stt", str(wav))
    try:
        reversible = child.state["reversible"]
        # The worker hears nothing while the audio queues up, as one with no CPU would.
        state = child.send("feed")
        assert state["starved"] and state["trips"] == 1
        if reversible:
            assert child.others() == {(os.SCHED_OTHER, BACKGROUND_NICENESS)}
        state = child.send("run")
        assert any("spider" in text.lower() for text in state["finals"]), state
        # Caught up: back on spare CPU time.
        assert not state["starved"]
        if reversible:
            assert {policy for policy, _ in child.others()} == {os.SCHED_IDLE}
        child.close()
    finally:
        if child.process.poll() is None:
            child.process.kill()


def test_the_llm_server_child_goes_below_the_back_end_every_thread() -> None:
    # As `kame talk` does to the llama.cpp child once it is up (its threads exist by then).
    script = "import threading, sys; [threading.Thread(target=sys.stdin.read).start() for _ in range(2)]"
    child = subprocess.Popen([sys.executable, "-S", "-c", script], stdin=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while len(threads_of(child.pid)) < 3:
            assert time.monotonic() < deadline, "the child's threads never started"
            time.sleep(0.01)
        assert deprioritize_process_tree(child.pid, LLM_SERVER_NICENESS) == 3
        assert {_placement(child.pid, tid) for tid in threads_of(child.pid)} == {
            (os.SCHED_OTHER, LLM_SERVER_NICENESS)
        }
        # --realtime: on CPU time nothing else wants.
        deprioritize_process_tree(child.pid, LLM_SERVER_NICENESS, idle=True)
        assert {_placement(child.pid, tid) for tid in threads_of(child.pid)} == {
            (os.SCHED_IDLE, LLM_SERVER_NICENESS)
        }
    finally:
        # An idle process dies slowly on a busy machine (its exit needs CPU time too): back to normal.
        for tid in threads_of(child.pid):
            with contextlib.suppress(OSError):
                os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
        child.kill()
        child.wait()
