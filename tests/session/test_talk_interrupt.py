"""Ctrl-C at random moments: `kame talk` exits 0 within a second and leaves a valid WAV and log."""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import soundfile as sf

from tests.session.conftest import read_events, session_started, start_talk, wait_for_event

EXIT_BOUND_S = 1.0


def test_sigint_at_random_moments_exits_cleanly(question_wav: Path, tmp_path: Path) -> None:
    rng = random.Random(20261122)
    duration = sf.info(question_wav).duration
    exits: list[float] = []
    for run in range(5):
        log_dir, out_wav = tmp_path / f"log{run}", tmp_path / f"out{run}.wav"
        process = start_talk("offline", question_wav, out_wav, log_dir)
        try:
            wait_for_event(log_dir / "events.jsonl", session_started, timeout=120)
            time.sleep(rng.uniform(0.0, duration - 1.0))
            sent = time.monotonic()
            process.send_signal(signal.SIGINT)
            _, stderr = process.communicate(timeout=10)
            exits.append(time.monotonic() - sent)
        finally:
            if process.poll() is None:
                process.kill()
        assert process.returncode == 0, stderr[-2000:]
        assert "Traceback" not in stderr
        events = read_events(log_dir / "events.jsonl")
        assert events[-1]["type"] == "BackendStatus" and events[-1]["message"] == "stopped"
        for wav in (out_wav, log_dir / "output.wav", log_dir / "input.wav"):
            audio, rate = sf.read(wav)
            assert rate == 24_000 and len(audio) > 0
    assert max(exits) <= EXIT_BOUND_S, f"exit took {max(exits):.2f} s after SIGINT (all: {exits})"
