"""Helpers for end-to-end `kame talk` runs: real CLI process, real models, real LLM server."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from subprocess import PIPE
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import soundfile as sf

from tests.support.speech import concat, synthesize

if TYPE_CHECKING:
    from tests.serve.paced_card import PacedSoundCard

QUESTION = "What is the capital city of France?"


def kame_env() -> dict[str, str]:
    """The environment a user would run kame in, plus the test settings (no compile, no hub)."""
    env = dict(os.environ)
    env.update(
        NO_TORCH_COMPILE="1", HF_HUB_OFFLINE="1", LITELLM_LOCAL_MODEL_COST_MAP="True", PYTHONUNBUFFERED="1"
    )
    return env


def kame_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "kame_cli.cli", *args]


def write_wav(path: Path, audio: np.ndarray) -> Path:
    sf.write(path, audio, 24_000, subtype="PCM_16")
    return path


def read_events(path: Path) -> list[dict]:
    """Every line of an events.jsonl, parsed (a line that is not JSON fails the test)."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def read_complete_events(path: Path) -> list[dict]:
    """The events of a growing events.jsonl written so far (a line still being written aside)."""
    events: list[dict] = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line still being written
    return events


def wait_until(condition, timeout: float) -> None:
    """Poll `condition()` until it holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s")
        time.sleep(0.05)


def wait_for_event(path: Path, predicate, timeout: float) -> dict:
    """Poll a growing events.jsonl until an event matches."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = next((e for e in read_complete_events(path) if predicate(e)), None)
        if match is not None:
            return match
        time.sleep(0.05)
    raise AssertionError(f"no matching event in {path} within {timeout} s")


def session_started(event: dict) -> bool:
    return (
        event["type"] == "BackendStatus" and event["component"] == "session" and event["message"] == "started"
    )


@pytest.fixture(scope="session")
def question_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A spoken question with silence after it, so the oracle has time to reach the voice."""
    audio = concat([0.4, synthesize(QUESTION), 5.0])
    return write_wav(tmp_path_factory.mktemp("speech") / "question.wav", audio)


def cpu_profile(path: Path, description: str, tables: str) -> Path:
    """A profile file: the given `[llm]`/`[policy]` tables, with tiny.en and random:tiny on the CPU."""
    path.write_text(
        f'description = "{description}"\n{tables.strip()}\n'
        '[stt]\nmodel = "tiny.en"\ndevice = "cpu"\n[frontend]\nmodel = "random:tiny"\ndevice = "cpu"\n',
        encoding="utf-8",
    )
    return path


def smollm2_profile(path: Path, description: str, api_base: str, more: str) -> Path:
    """A `cpu_profile` whose oracle is SmolLM2 served at `api_base` (OpenAI protocol); `more` holds
    further `[llm]` keys and tables."""
    llm = f'[llm]\nprovider = "openai"\nmodel = "smollm2"\napi_base = "{api_base}"\n'
    return cpu_profile(path, description, llm + more.strip())


def talk_args(profile: str, wav: Path, out_wav: Path, log_dir: Path) -> tuple[str, ...]:
    """`kame talk`'s arguments for a file in, an output WAV and a session log out, in plain lines."""
    return (
        "talk",
        "--profile",
        profile,
        "--input",
        str(wav),
        "--output",
        str(out_wav),
        "--log-dir",
        str(log_dir),
        "--no-ui",
    )


def start_talk(
    profile: str, wav: Path, out_wav: Path, log_dir: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """`kame talk` with `talk_args` in the background; `env` adds to `kame_env()`."""
    return subprocess.Popen(
        kame_command(*talk_args(profile, wav, out_wav, log_dir), *extra),
        env={**kame_env(), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@contextlib.contextmanager
def kame_on_card(folder: Path, *args: str) -> Iterator[tuple[PacedSoundCard, subprocess.Popen[str]]]:
    """`kame ARGS` in the background on a paced virtual card made in `folder` (its default
    microphone and speaker); the process is killed if the block leaves it running."""
    from tests.serve.paced_card import started_card

    card = started_card(folder)
    process = subprocess.Popen(
        kame_command(*args), env={**kame_env(), **card.env()}, stdout=PIPE, stderr=PIPE, text=True
    )
    try:
        yield card, process
    finally:
        if process.poll() is None:
            process.kill()
        card.stop()


def interrupt(process: subprocess.Popen[str]) -> tuple[str, str]:
    """Ctrl-C, as a user ends `kame talk`: its stdout and stderr once it exited."""
    process.send_signal(signal.SIGINT)
    return process.communicate(timeout=30)


def run_kame(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        kame_command(*args), env=kame_env(), capture_output=True, text=True, timeout=timeout
    )


def stop_process(process: subprocess.Popen[Any], sig: int = signal.SIGTERM, timeout: float = 10) -> None:
    """Send `sig` and wait for the exit; kill the process if it outlives `timeout` seconds."""
    process.send_signal(sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def stderr_lines(stderr: str) -> list[str]:
    """The lines a user sees on stderr (blank lines aside)."""
    return [line for line in stderr.splitlines() if line.strip()]


def pid_alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, reaped or not, does not count)."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def session_pids(events: list[dict]) -> dict[str, list[int]]:
    """role -> pids of the session's processes, from the log's ProcessStarted events."""
    pids: dict[str, list[int]] = {}
    for event in events:
        if event["type"] == "ProcessStarted":
            pids.setdefault(event["role"], []).append(event["pid"])
    return pids


def assert_valid_session_files(log_dir: Path, *wavs: Path) -> list[dict]:
    """Every log line parses, the last one is the final `stopped`, every WAV opens; the events."""
    events = read_events(log_dir / "events.jsonl")
    assert events[-1]["type"] == "BackendStatus" and events[-1]["message"].startswith("stopped"), events[-3:]
    assert (log_dir / "events.jsonl").read_bytes().endswith(b"\n")
    for wav in (log_dir / "input.wav", log_dir / "output.wav", *wavs):
        info = sf.info(wav)
        assert info.samplerate == 24_000, wav
    return events


def assert_clean_exit(
    process: subprocess.Popen[str], stderr: str, log_dir: Path, out_wav: Path
) -> list[dict]:
    """The session exited 0 with nothing on stderr and left valid files; its events."""
    assert process.returncode == 0, stderr[-2000:]
    assert stderr_lines(stderr) == [], stderr
    return assert_valid_session_files(log_dir, out_wav)


def nothing_left(tmpdir: Path, events: list[dict]) -> None:
    """No process of the session runs any more, and no llama.cpp folder is left in `tmpdir`."""
    import psutil

    assert not list(tmpdir.glob("kame-llama-*")), "the llama.cpp server's folder was removed"
    assert not any(pid_alive(pid) for pids in session_pids(events).values() for pid in pids)
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        assert str(tmpdir) not in cmdline or not pid_alive(proc.pid), f"left running: {cmdline}"
