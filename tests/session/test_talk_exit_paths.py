"""How a session ends when told to while loading, or when the disk fills up: exit code, exactly one
stderr line, no traceback, valid files, no temporary folder and no process left behind. (Stop signals
during a session: test_talk_interrupt.)"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
from pathlib import Path

import pytest
import soundfile as sf

from tests.session.conftest import (
    assert_valid_session_files,
    kame_command,
    kame_env,
    nothing_left,
    read_events,
    run_kame,
    session_started,
    stderr_lines,
    wait_for_event,
    write_wav,
)


def _talk(tmp: Path, wav: Path, *extra: str, preexec_fn=None) -> tuple[subprocess.Popen[str], Path, Path]:
    """`kame talk` with its temporary files (the llama.cpp server's folder) under `tmp/tmpdir`."""
    log_dir, out_wav = tmp / "log", tmp / "out.wav"
    tmpdir = tmp / "tmpdir"
    tmpdir.mkdir()
    args = ("talk", "--input", str(wav), "--output", str(out_wav), "--log-dir", str(log_dir), "--no-ui")
    process = subprocess.Popen(
        kame_command(*args, *extra),
        env={**kame_env(), "TMPDIR": str(tmpdir)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=preexec_fn,
    )
    return process, log_dir, out_wav


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_stop_signal_while_models_load_ends_cleanly(question_wav: Path, tmp_path: Path, sig) -> None:
    process, log_dir, out_wav = _talk(tmp_path, question_wav, "--profile", "offline")
    try:
        wait_for_event(
            log_dir / "events.jsonl", lambda e: e["type"] == "ProcessStarted" and e["role"] == "backend", 60
        )
        process.send_signal(sig)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr[-2000:]
    assert stderr_lines(stderr) == []
    events = read_events(log_dir / "events.jsonl")
    assert events[-1]["type"] == "BackendStatus" and events[-1]["message"].startswith("stopped")
    assert not any(session_started(e) for e in events), "the signal came before the session started"
    for wav in (log_dir / "input.wav", log_dir / "output.wav"):
        assert sf.info(wav).frames == 0  # valid, empty
    assert sf.info(out_wav).frames == 0, "the --output file exists, valid and empty, as after any stop"
    nothing_left(tmp_path / "tmpdir", events)


def test_output_on_a_full_device_is_one_line_and_exit_1_and_fast_mode_is_lossless(
    question_wav: Path, tmp_path: Path
) -> None:
    # The question's first 3 s: 38 steps held 100 ms each, not the whole file's 100.
    audio, rate = sf.read(question_wav, dtype="float32")
    wav = write_wav(tmp_path / "short.wav", audio[: 3 * rate])
    log_dir = tmp_path / "log"
    result = run_kame(
        "talk", "--profile", "offline", "--no-llm", "--fast", "--input", str(wav),
        "--output", "/dev/full", "--log-dir", str(log_dir), "--no-ui", "--debug-step-delay-ms", "100",
    )  # fmt: skip
    assert result.returncode == 1, result.stderr[-2000:]
    lines = stderr_lines(result.stderr)
    assert len(lines) == 1 and "/dev/full" in lines[0] and "No space left" in lines[0], lines
    events = assert_valid_session_files(log_dir)
    frames = -(-sf.info(wav).frames // 1920)
    assert sf.info(log_dir / "output.wav").frames == frames * 1920, "the log's copy is whole"
    # Slower than real time on purpose, and still lossless: --fast never drops a frame.
    assert [e["step"] for e in events if e["type"] == "StepTiming"] == list(range(frames))
    assert not [e for e in events if e["type"] == "FramesDropped"]
    assert all(e["total_ms"] >= 100 for e in events if e["type"] == "StepTiming")


def _file_size_limit() -> None:
    # The kernel refuses writes past 48 kB in this process and its children (EFBIG), as a full
    # disk does (ENOSPC): the same failed write, without needing root to mount a tiny filesystem.
    resource.setrlimit(resource.RLIMIT_FSIZE, (48_000, 48_000))


def test_log_dir_on_a_full_disk_keeps_whole_lines_and_valid_wavs(question_wav: Path, tmp_path: Path) -> None:
    process, log_dir, _ = _talk(
        tmp_path, question_wav, "--profile", "offline", "--no-llm", "--fast", preexec_fn=_file_size_limit
    )
    _, stderr = process.communicate(timeout=180)
    assert process.returncode == 1, stderr[-2000:]
    lines = stderr_lines(stderr)
    assert len(lines) == 1 and lines[0].startswith("kame: error: ") and "Traceback" not in stderr, lines
    assert "File too large" in lines[0]
    raw = (log_dir / "events.jsonl").read_bytes()
    assert raw.endswith(b"\n") and len(raw) <= 48_000
    events = read_events(log_dir / "events.jsonl")  # every line is whole JSON
    assert events and events[0]["type"] == "ProcessStarted"
    for name in ("input.wav", "output.wav"):
        info = sf.info(log_dir / name)
        assert info.samplerate == 24_000 and info.frames > 0 and (log_dir / name).stat().st_size <= 48_000
        data, _ = sf.read(log_dir / name)
        assert len(data) == info.frames


def test_log_dir_must_be_new_or_empty(question_wav: Path, tmp_path: Path) -> None:
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    used = tmp_path / "used"
    used.mkdir()
    (used / "events.jsonl").symlink_to(target)
    for log_dir, words in ((used, "not empty"), ("", "empty")):
        result = run_kame(
            "talk", "--profile", "offline", "--input", str(question_wav), "--log-dir", str(log_dir)
        )
        assert result.returncode == 2, result.stderr
        lines = stderr_lines(result.stderr)
        assert len(lines) == 1 and "--log-dir" in lines[0] and words in lines[0], lines
    assert target.read_text() == "keep me" and os.stat(target).st_mode & 0o777 != 0o600
