"""`kame talk` end to end in file mode: random:tiny front-end, real tiny.en, real SmolLM2 server."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from kame_cli.engine.config import FrontendConfig
from kame_cli.engine.loader import load_frontend
from kame_cli.session.logfile import decode_record
from kame_cli.tandem.oracle_trace import trace_generations
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
    """Check KAME's oracle semantics on what the front-end consumed: after each reset, token k of that
    answer at the reset's step + k, or never. A chunk that reaches the front-end after its first
    token's step (a slow LLM, or the two process hops on a loaded CPU) has those tokens skipped, as in
    the reference (`oracle_tokens[offset - injected_offset]`); returns the answer tokens consumed."""
    generations, start_id = trace_generations([decode_record(e) for e in events])
    assert start_id in (None, start_token), start_id
    assert any(g.start_fed is not None for g in generations.values()), "no reset reached the voice"
    consumed = 0
    for generation in generations.values():
        if generation.start_fed is None:
            assert not generation.fed, f"generation {generation.number} fed without its start token"
            continue
        answer = [start_token, *(t for chunk in generation.chunks for t in chunk.token_ids)]
        for fed in generation.fed:
            position = fed.step - generation.start_fed.step
            assert 0 < position < len(answer) and fed.token_id == answer[position], (
                f"generation {generation.number} fed token {fed.token_id} at position {position}"
            )
        consumed += len(generation.fed)
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
