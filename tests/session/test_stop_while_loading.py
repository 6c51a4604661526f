"""A stop signal while the session loads: during the first offline session's Q8_0 conversion of the
bundled GGUF too, `kame talk` exits 0 within a second, never says "started", leaves no converter
and no half copy, and the `--output` file exists as a valid WAV, as after any stop."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import psutil
import soundfile as sf

from tests.session.conftest import (
    assert_clean_exit,
    assert_valid_session_files,
    nothing_left,
    read_events,
    start_talk,
)

EXIT_BOUND_S = 1.0


def _wait_for(condition, process: subprocess.Popen[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, process.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "the moment to stop never came"
        time.sleep(0.01)


def _stop(process: subprocess.Popen[str]) -> tuple[str, float]:
    sent = time.monotonic()
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    return stderr, time.monotonic() - sent


def _converters(cache: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if "--convert" in cmdline and str(cache) in cmdline:
            found.append(proc)
    return found


def test_ctrl_c_during_the_q8_0_conversion_exits_within_a_second(question_wav: Path, tmp_path: Path) -> None:
    cache, log_dir, out_wav = tmp_path / "cache", tmp_path / "log", tmp_path / "out.wav"
    (tmp_path / "tmpdir").mkdir()
    env = {"KAME_CACHE_DIR": str(cache), "TMPDIR": str(tmp_path / "tmpdir")}
    process = start_talk("offline", question_wav, out_wav, log_dir, env=env)
    try:
        _wait_for(lambda: bool(_converters(cache)) and any(cache.glob("*.part*")), process, timeout=180)
        stderr, exited = _stop(process)
    finally:
        if process.poll() is None:
            process.kill()
    events = assert_clean_exit(process, stderr, log_dir, out_wav)
    assert not [e for e in events if e["type"] == "SessionStarted" or e.get("message") == "started"]
    assert sf.info(out_wav).frames == 0
    assert not [p for p in cache.iterdir() if p.name != ".gguf.lock"], "no copy, whole or half, is left"
    assert not [p for p in _converters(cache) if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    nothing_left(tmp_path / "tmpdir", events)
    assert exited <= EXIT_BOUND_S, f"exit took {exited:.2f} s after the signal"


def test_a_stop_while_loading_leaves_the_output_file_as_a_valid_wav(
    question_wav: Path, tmp_path: Path
) -> None:
    log_dir, out_wav = tmp_path / "log", tmp_path / "out.wav"
    process = start_talk("offline", question_wav, out_wav, log_dir, "--no-llm")

    def frontend_started() -> bool:
        path = log_dir / "events.jsonl"
        return path.is_file() and b'"ProcessStarted"' in path.read_bytes()

    try:
        _wait_for(frontend_started, process, timeout=120)
        stderr, _ = _stop(process)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr[-2000:]
    events = read_events(log_dir / "events.jsonl")
    assert not [e for e in events if e["type"] == "SessionStarted"], "stopped while loading"
    assert_valid_session_files(log_dir, out_wav)
    assert sf.info(out_wav).frames == 0
