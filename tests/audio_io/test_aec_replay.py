"""`kame talk --echo-reference`: a recorded two-channel session replayed through the canceller."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from kame_cli.audio_io.room import RoomSetup, shoebox_rir
from kame_cli.clock import SAMPLE_RATE
from tests.session.conftest import read_events, run_kame
from tests.support.speech import concat, synthesize

ASSISTANT = "The museum opens at nine and closes at six every day."


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What `--output-stereo` records while the assistant talks over a speaker and the user is silent:
    left the microphone (the assistant's voice through a room, 150 ms late), right the assistant."""
    from scipy.signal import fftconvolve

    far = concat([0.3, synthesize(ASSISTANT), 1.2]).astype(np.float64) * 0.5
    setup = RoomSetup(distance_m=0.8, rt60_s=0.3, device_delay_s=0.15, level_db=0.0, dims_m=(4.5, 3.5, 2.7))
    rir = shoebox_rir(setup, SAMPLE_RATE, np.random.default_rng(11))
    delay = round(setup.device_delay_s * SAMPLE_RATE)
    echo = np.concatenate([np.zeros(delay), fftconvolve(far, rir)])[: far.shape[0]]
    echo += np.random.default_rng(1).normal(scale=3e-4, size=echo.shape[0])
    path = tmp_path_factory.mktemp("replay") / "session.wav"
    sf.write(path, np.stack([echo, far], axis=1).astype(np.float32), SAMPLE_RATE, subtype="PCM_16")
    return path


def _replay(recording: Path, log_dir: Path, aec: str) -> list[dict]:
    result = run_kame(
        "talk", "--profile", "offline", "--no-llm", "--model", "random:tiny", "--device", "cpu",
        "--input", str(recording), "--echo-reference", str(recording), "--aec", aec,
        "--fast", "--no-ui", "--log-dir", str(log_dir),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return read_events(log_dir / "events.jsonl")


def _heard_words(events: list[dict]) -> list[str]:
    return [w for e in events if e["type"] == "FinalTranscript" for w in e["text"].split()]


def test_replaying_a_recorded_echo_shows_it_and_the_canceller_removes_it(
    recording: Path, tmp_path: Path
) -> None:
    off = _replay(recording, tmp_path / "off", "off")
    on = _replay(recording, tmp_path / "on", "auto")  # auto: a reference is replayed, so on

    # Without the canceller the STT takes the assistant's own voice for the user's.
    assert len(_heard_words(off)) >= 4
    assert not any(e["type"] == "AecStatus" for e in off)
    # With it, nothing of the assistant's voice is left to transcribe, and the panel gets figures.
    assert _heard_words(on) == []
    status = [e for e in on if e["type"] == "AecStatus"]
    assert status and status[-1]["erle_db"] >= 20.0
    # The log's input.wav keeps the raw microphone (the left channel), so the replay can be repeated.
    logged, rate = sf.read(tmp_path / "on" / "input.wav", dtype="float32")
    left = sf.read(recording, dtype="float32")[0][:, 0]
    assert rate == SAMPLE_RATE
    np.testing.assert_allclose(logged[: left.shape[0]], left, atol=1 / 32768)
