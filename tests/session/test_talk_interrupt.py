"""Ctrl-C, SIGTERM and SIGHUP at random moments: `kame talk` exits 0 within a second and leaves a
valid WAV and log, no child process and no temporary folder."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from pathlib import Path

import soundfile as sf

from tests.session.conftest import (
    assert_valid_session_files,
    kame_command,
    kame_env,
    nothing_left,
    session_started,
    stderr_lines,
    wait_for_event,
)

EXIT_BOUND_S = 1.0
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGINT)


def test_stop_signals_at_random_moments_exit_cleanly(question_wav: Path, tmp_path: Path) -> None:
    rng = random.Random(20261122)
    duration = sf.info(question_wav).duration
    exits: list[float] = []
    for run, sig in enumerate(SIGNALS):
        run_dir = tmp_path / f"run{run}"
        (run_dir / "tmpdir").mkdir(parents=True)
        log_dir, out_wav = run_dir / "log", run_dir / "out.wav"
        args = ("talk", "--profile", "offline", "--input", str(question_wav), "--output", str(out_wav))
        process = subprocess.Popen(
            kame_command(*args, "--log-dir", str(log_dir), "--no-ui"),
            env={**kame_env(), "TMPDIR": str(run_dir / "tmpdir")},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_for_event(log_dir / "events.jsonl", session_started, timeout=150)
            time.sleep(rng.uniform(0.0, duration - 1.0))
            sent = time.monotonic()
            process.send_signal(sig)
            _, stderr = process.communicate(timeout=30)
            exits.append(time.monotonic() - sent)
        finally:
            if process.poll() is None:
                process.kill()
        name = signal.Signals(sig).name
        assert process.returncode == 0, (name, stderr[-2000:])
        assert stderr_lines(stderr) == [], (name, stderr)
        events = assert_valid_session_files(log_dir, out_wav)
        for wav in (out_wav, log_dir / "output.wav", log_dir / "input.wav"):
            assert sf.info(wav).frames > 0, wav
        nothing_left(run_dir / "tmpdir", events)
    assert max(exits) <= EXIT_BOUND_S, f"exit took {max(exits):.2f} s after the signal (all: {exits})"
