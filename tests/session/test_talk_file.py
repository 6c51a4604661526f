"""`kame talk` end to end in file mode: random:tiny front-end, real tiny.en, real SmolLM2 server."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from kame_cli.engine.config import FrontendConfig
from kame_cli.engine.loader import load_frontend
from tests.session.conftest import read_events, run_kame, talk_args

FRAME = 1920


@pytest.fixture(scope="module")
def start_token() -> int:
    """The text start token of the `random:tiny` front-end that the offline profile runs."""
    return load_frontend(FrontendConfig(model="random:tiny", device="cpu")).text_start_id


@pytest.fixture(scope="module")
def paced_run(question_wav: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """One real-time session on the spoken question: (log dir, output WAV, stdout)."""
    tmp = tmp_path_factory.mktemp("paced")
    log_dir, out_wav = tmp / "log", tmp / "out.wav"
    result = run_kame(*talk_args("offline", question_wav, out_wav, log_dir), "--seed", "1")
    assert result.returncode == 0, result.stderr[-2000:]
    return log_dir, out_wav, result.stdout


def _finals(events: list[dict]) -> list[str]:
    return [e["text"] for e in events if e["type"] == "FinalTranscript"]


def _oracle_feeds_match_chunks(events: list[dict], start_token: int) -> int:
    """Check that, after each reset, the front-end consumed the streamed chunks' tokens in order, one
    per step; returns how many answer tokens were consumed in all."""
    chunks: dict[int, list[int]] = {}
    resets: list[int] = []  # generations in the order their first chunk reset the stream
    for event in events:
        if event["type"] == "OracleChunk":
            chunks.setdefault(event["generation"], []).extend(event["token_ids"])
            if event["first"]:
                resets.append(event["generation"])
    fed = [e for e in events if e["type"] == "OracleFed"]
    starts = [i for i, e in enumerate(fed) if e["token_id"] == start_token]
    assert len(starts) == len(resets) >= 1, (len(starts), resets)
    consumed = 0
    for n, (first, generation) in enumerate(zip(starts, resets, strict=True)):
        end = starts[n + 1] if n + 1 < len(starts) else len(fed)
        run = fed[first + 1 : end]
        tokens = [e["token_id"] for e in run]
        assert tokens == chunks[generation][: len(tokens)], f"generation {generation} fed out of order"
        steps = [fed[first]["step"]] + [e["step"] for e in run]
        assert steps == list(range(steps[0], steps[0] + len(steps))), "one oracle token per step, no gaps"
        consumed += len(tokens)
    return consumed


def test_spoken_question_reaches_the_voice_through_the_oracle(
    paced_run: tuple[Path, Path, str], question_wav: Path, start_token: int
) -> None:
    log_dir, out_wav, stdout = paced_run
    events = read_events(log_dir / "events.jsonl")
    kinds = Counter(e["type"] for e in events)
    assert kinds["PartialTranscript"] >= 2 and kinds["FinalTranscript"] >= 1, kinds
    assert "capital" in " ".join(_finals(events)).lower()
    assert kinds["OracleRequestStarted"] >= 1 and kinds["FrontendText"] >= 1, kinds
    assert _oracle_feeds_match_chunks(events, start_token) >= 3

    input_frames = -(-sf.info(question_wav).frames // FRAME)
    for wav in (out_wav, log_dir / "output.wav", log_dir / "input.wav"):
        info = sf.info(wav)
        assert info.samplerate == 24_000
        assert abs(info.frames - input_frames * FRAME) <= FRAME, wav
    assert (log_dir / "events.jsonl").stat().st_mode & 0o077 == 0, "the log is for the user only"
    assert "user: " in stdout and "oracle #" in stdout


def test_fast_mode_hears_the_same_and_stereo_holds_both_voices(
    paced_run: tuple[Path, Path, str], question_wav: Path, tmp_path: Path
) -> None:
    log_dir, out_wav = tmp_path / "log", tmp_path / "stereo.wav"
    # --no-llm: what the user said and the two voices need no oracle to compare them.
    result = run_kame(
        *talk_args("offline", question_wav, out_wav, log_dir), "--fast", "--no-llm", "--output-stereo"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    paced_finals = _finals(read_events(paced_run[0] / "events.jsonl"))
    assert _finals(read_events(log_dir / "events.jsonl")) == paced_finals

    stereo, rate = sf.read(out_wav, dtype="int16")
    user, assistant = (
        sf.read(log_dir / "input.wav", dtype="int16")[0],
        sf.read(log_dir / "output.wav", dtype="int16")[0],
    )
    assert rate == 24_000 and stereo.shape == (len(user), 2)
    np.testing.assert_array_equal(stereo[:, 0], user)  # left: the user, as heard
    np.testing.assert_array_equal(stereo[:, 1], assistant)  # right: the assistant
    assert np.abs(user.astype(np.int32)).max() > 1000 and np.abs(assistant.astype(np.int32)).max() > 0
