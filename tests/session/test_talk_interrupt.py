"""Ctrl-C, SIGTERM and SIGHUP at random moments: `kame talk` exits 0 within a second and leaves a
valid WAV and log, no child process and no temporary folder."""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import pytest
import soundfile as sf

from tests.session.conftest import (
    assert_clean_exit,
    nothing_left,
    session_started,
    start_talk,
    wait_for_event,
)

EXIT_BOUND_S = 1.0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_a_stop_signal_at_a_random_moment_exits_cleanly(
    sig: signal.Signals, question_wav: Path, tmp_path: Path
) -> None:
    rng = random.Random(20261122 + int(sig))
    duration = sf.info(question_wav).duration
    (tmp_path / "tmpdir").mkdir()
    log_dir, out_wav = tmp_path / "log", tmp_path / "out.wav"
    process = start_talk("offline", question_wav, out_wav, log_dir, env={"TMPDIR": str(tmp_path / "tmpdir")})
    try:
        wait_for_event(log_dir / "events.jsonl", session_started, timeout=150)
        time.sleep(rng.uniform(0.0, duration - 1.0))  # the random moment, not a wait for a condition
        sent = time.monotonic()
        process.send_signal(sig)
        _, stderr = process.communicate(timeout=30)
        exited = time.monotonic() - sent
    finally:
        if process.poll() is None:
            process.kill()
    events = assert_clean_exit(process, stderr, log_dir, out_wav)
    for wav in (out_wav, log_dir / "output.wav", log_dir / "input.wav"):
        assert sf.info(wav).frames > 0, wav
    nothing_left(tmp_path / "tmpdir", events)
    assert exited <= EXIT_BOUND_S, f"exit took {exited:.2f} s after the signal"
