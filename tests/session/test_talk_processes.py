"""The process layout's faults: a back-end killed mid-session is replaced while the voice goes on;
a front-end killed ends the session with one line, exit 1, valid files and no process left, whether
the children are fresh interpreters or forks of the templates `KAME_TEMPLATES` names."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import soundfile as sf

from kame_cli.priority import can_leave_idle
from tests.session.conftest import (
    assert_valid_session_files,
    interrupt,
    kame_on_card,
    pid_alive,
    read_events,
    session_pids,
    session_started,
    start_talk,
    stderr_lines,
    wait_for_event,
    wait_until,
)
from tests.support.speech import concat, synthesize

FRAME = 1920


def _placements(pid: int) -> list[tuple[int, int]]:
    """(policy, niceness) of every thread of `pid` (one that ends meanwhile is left out)."""
    found = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError):
            found.append((os.sched_getscheduler(int(tid)), os.getpriority(os.PRIO_PROCESS, int(tid))))
    return found


@pytest.mark.usefixtures("fresh_interpreters")
def test_backend_killed_mid_session_is_restarted_and_the_voice_goes_on(tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    events_path = log_dir / "events.jsonl"
    # A microphone paced in real time (a virtual card), not a file: the second question is spoken
    # once the new back-end runs. Its load on a busy CPU can take longer than any pause written
    # into a file, and the audio said meanwhile is not the STT's to hear.
    talk = kame_on_card(tmp_path / "card", *_TALK, "--log-dir", str(log_dir), "--no-llm", "--realtime")
    with talk as (card, process):
        wait_for_event(events_path, session_started, timeout=150)
        pids = session_pids(read_events(events_path))
        frontend_policy = os.sched_getscheduler(pids["frontend"][0])
        backend_nice = os.getpriority(os.PRIO_PROCESS, pids["backend"][0])
        backend_threads = _placements(pids["backend"][0])
        card.say(concat([synthesize("What is the capital city of France?"), 1.5]))
        first = wait_for_event(events_path, lambda e: e["type"] == "FinalTranscript", timeout=60)
        (backend,) = pids["backend"]
        # A killed process exits on its own CPU time: under SCHED_IDLE on a busy machine that can
        # take seconds, and the restart's timing is not what this test is about.
        for tid in os.listdir(f"/proc/{backend}/task"):
            with contextlib.suppress(OSError):
                os.sched_setscheduler(int(tid), os.SCHED_OTHER, os.sched_param(0))
        os.kill(backend, signal.SIGKILL)
        wait_for_event(events_path, _restarted, timeout=150)
        card.say(concat([synthesize("How many legs does a spider have?"), 1.5]))
        wait_for_event(events_path, lambda e: e["type"] == "FinalTranscript" and e["t"] > first["t"], 60)
        stdout, stderr = interrupt(process)
    assert process.returncode == 0, stderr[-2000:]
    assert "Traceback" not in stderr
    # --realtime: the front-end runs under a real-time policy, or says in one line why it cannot.
    if frontend_policy in (os.SCHED_FIFO, os.SCHED_RR):
        assert stderr_lines(stderr) == []
    else:
        (line,) = stderr_lines(stderr)
        assert line.startswith("kame: --realtime refused (")
    assert backend_nice >= 10
    # Every thread of the back-end is below the front-end (those its imports started too): under
    # SCHED_IDLE but for its starvation guard's and its link reader's, or all lifted while the
    # guard finds the STT starved (a loaded machine); at niceness 19 where this user may not leave
    # SCHED_IDLE.
    policies = [policy for policy, _ in backend_threads]
    assert all(niceness >= 10 for _, niceness in backend_threads), backend_threads
    if not can_leave_idle():
        assert set(policies) == {os.SCHED_OTHER}, backend_threads
    else:
        idle_but_two = policies.count(os.SCHED_OTHER) == 2 and os.SCHED_IDLE in policies
        assert idle_but_two or set(policies) == {os.SCHED_OTHER}, backend_threads

    events = assert_valid_session_files(log_dir)
    died = next(e for e in events if e["type"] == "ProcessEnded" and e["role"] == "backend")
    assert died["pid"] == backend and died["exit_code"] == -signal.SIGKILL and not died["expected"]
    restarted = [
        e for e in events if e["type"] == "ProcessStarted" and e["role"] == "backend" and e["attempt"] == 2
    ]
    assert len(restarted) == 1 and restarted[0]["t"] > died["t"]
    assert any(
        e["type"] == "BackendStatus" and e["component"] == "backend" and e["state"] == "error" for e in events
    )
    # The restarted STT hears the second question, on the session's audio clock.
    finals = [e for e in events if e["type"] == "FinalTranscript" and e["t"] > died["t"]]
    assert any("spider" in e["text"].lower() for e in finals), finals
    assert all(e["audio_start"] > first["audio_end"] for e in finals if "spider" in e["text"].lower())
    # The voice never stopped: one output frame per input frame, every step in order.
    input_frames = sf.info(log_dir / "input.wav").frames // FRAME
    assert sf.info(log_dir / "output.wav").frames == input_frames * FRAME
    steps = [e["step"] for e in events if e["type"] == "StepTiming"]
    (summary,) = [e for e in events if e["type"] == "SessionSummary"]
    assert steps == list(range(len(steps))) and summary["backend_restarts"] == 1
    # A CPU too busy to keep up drops frames (the lag bound), never the back-end's death.
    assert len(steps) + summary["dropped_frames"] == input_frames
    assert "backend process died (killed by SIGKILL)" in stdout and "backend process restarted" in stdout
    assert not any(pid_alive(pid) for pids in session_pids(events).values() for pid in pids)


@contextlib.contextmanager
def _session_past_step(
    wav: Path, tmp_path: Path, step: int
) -> Iterator[tuple[subprocess.Popen[str], Path, dict[str, list[int]]]]:
    """A `kame talk --no-llm` session on `wav` that has stepped `step` times: (its process, its log
    dir, its processes' pids by role); killed if the block leaves it running."""
    log_dir = tmp_path / "log"
    events_path = log_dir / "events.jsonl"
    process = start_talk("offline", wav, tmp_path / "out.wav", log_dir, "--no-llm")
    try:
        wait_for_event(events_path, session_started, timeout=150)
        wait_for_event(events_path, lambda e: e["type"] == "StepTiming" and e["step"] >= step, timeout=30)
        yield process, log_dir, session_pids(read_events(events_path))
    finally:
        if process.poll() is None:
            process.kill()


_TALK = ("talk", "--profile", "offline", "--no-ui", "--headphones")


def _restarted(event: dict) -> bool:
    return (
        event["type"] == "BackendStatus"
        and event["component"] == "backend"
        and "restarted" in event["message"]
    )


@pytest.fixture(params=["fresh", "templates"])
def layout(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Where the session's children come from: fresh interpreters, or the suite's templates."""
    if request.param == "fresh":
        request.getfixturevalue("fresh_interpreters")
    return str(request.param)


def _parent(pid: int) -> str:
    """What started `pid`: "template frontend" / "template backend", or "kame talk"."""
    cmdline = psutil.Process(psutil.Process(pid).ppid()).cmdline()
    if "kame_cli.session.template_proc" in cmdline:
        return "template " + cmdline[cmdline.index("--role") + 1]
    return "kame talk" if "talk" in cmdline else " ".join(cmdline)


def _wav_frames(path: Path) -> int:
    """The frames a growing WAV's header says it holds (0 before it has one)."""
    try:
        return int(sf.info(path).frames)
    except (OSError, RuntimeError):  # not there yet, or its header not yet written
        return 0


def test_frontend_killed_ends_with_one_line_and_exit_1(
    layout: str, question_wav: Path, tmp_path: Path
) -> None:
    out_wav = tmp_path / "out.wav"
    with _session_past_step(question_wav, tmp_path, 10) as (process, log_dir, by_role):
        (frontend,) = by_role["frontend"]
        (backend,) = by_role["backend"]
        parents = {_parent(frontend), _parent(backend)}
        assert parents == ({"kame talk"} if layout == "fresh" else {"template frontend", "template backend"})
        # The WAV writer is the front-end's own thread, a step or two behind the loop's events.
        wait_until(lambda: _wav_frames(out_wav) >= 10 * FRAME, 30)
        os.kill(frontend, signal.SIGKILL)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 1, stderr[-2000:]
    lines = stderr_lines(stderr)
    assert len(lines) == 1 and lines[0].startswith(
        "kame: error: the front-end process died (killed by SIGKILL"
    ), lines
    events = assert_valid_session_files(log_dir, out_wav)
    died = next(e for e in events if e["type"] == "ProcessEnded" and e["role"] == "frontend")
    assert not died["expected"] and died["exit_code"] == -signal.SIGKILL
    assert sf.info(out_wav).frames >= 10 * FRAME  # what was said before the kill is in the file
    assert not any(pid_alive(pid) for pids in session_pids(events).values() for pid in pids)


@pytest.mark.usefixtures("fresh_interpreters")
def test_supervisor_killed_leaves_no_process_and_valid_files(question_wav: Path, tmp_path: Path) -> None:
    out_wav = tmp_path / "out.wav"
    with _session_past_step(question_wav, tmp_path, 5) as (process, log_dir, by_role):
        pids = [pid for role in by_role.values() for pid in role]
        process.kill()  # the CLI's own process, as `kill -9` would
        process.communicate(timeout=30)
    # The children see their socket close: the front-end closes its files and both end.
    wait_until(lambda: not any(pid_alive(pid) for pid in pids), 15)
    for wav in (out_wav, log_dir / "input.wav", log_dir / "output.wav"):
        assert sf.info(wav).frames >= 5 * FRAME
    read_events(log_dir / "events.jsonl")  # whole lines, even cut short
