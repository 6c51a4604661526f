"""Revisions: the echo canceller gives the STT the user's onset it first suppressed, and the recognizer
hears it in place of what it was sent (`SttWorker.submit_revision`, `StreamingRecognizer.revise_audio`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kame_cli.backends.stt.audio import WHISPER_RATE
from kame_cli.backends.stt.config import SttConfig
from kame_cli.backends.stt.model import SttModel
from kame_cli.backends.stt.recognizer import StreamingRecognizer
from kame_cli.backends.stt.text import normalize_words
from kame_cli.bench.stt import feed
from kame_cli.clock import FRAME_SAMPLES, SAMPLE_RATE, SessionClock
from kame_cli.events import FinalTranscript
from tests.support.speech import concat, frames, load, speak


class _Silent:
    """A VAD that hears no speech: the recognizer only keeps audio."""

    def reset(self) -> None:
        return None

    def push(self, audio16k: np.ndarray) -> np.ndarray:
        return np.zeros(len(audio16k) // 512)


def test_a_revision_replaces_what_the_recognizer_still_holds_and_nothing_else(
    stt_config: SttConfig, stt_model: SttModel
) -> None:
    recognizer = StreamingRecognizer(stt_model, stt_config, vad=_Silent())
    sent = np.random.default_rng(0).standard_normal(WHISPER_RATE).astype(np.float32)  # 1 s, all held
    recognizer.insert_audio(sent)
    held = recognizer._slice(0, WHISPER_RATE)
    recognizer.revise_audio(12_000, np.ones(4_000, dtype=np.float32))
    np.testing.assert_array_equal(held[:8_000], sent[:8_000])
    np.testing.assert_array_equal(held[12_000:], sent[12_000:])
    # Cross-faded in over its first 10 ms, then the revision itself.
    ramp = np.arange(160, dtype=np.float32) / 160
    np.testing.assert_allclose(held[8_000:8_160], ramp + (1 - ramp) * sent[8_000:8_160], atol=1e-6)
    np.testing.assert_array_equal(held[8_160:12_000], 1.0)
    # Past what was inserted, nothing is written; and the stream goes on from where it was.
    recognizer.revise_audio(WHISPER_RATE + 500, np.full(1_000, 2.0, dtype=np.float32))
    np.testing.assert_array_equal(held[-340:], 2.0)  # the last 500 samples, faded in over 160
    assert recognizer.position == WHISPER_RATE
    before = held.copy()
    recognizer.revise_audio(-100, np.full(500, 3.0, dtype=np.float32))  # before the stream: nothing
    np.testing.assert_array_equal(held, before)


def test_a_revised_onset_is_heard_where_the_suppressed_one_was_misheard(
    stt_config: SttConfig, stt_model: SttModel, tmp_path: Path
) -> None:
    # The user's first 0.45 s, as the echo canceller's residual-echo suppressor gives it until a VAD
    # is sure of them: 40 dB down. The front-end heard it so; the STT is then sent it as it should
    # have been (the frame after, as a session sends it) and must hear the first words.
    text = "How many legs does a spider have?"
    voice = load(speak(text, tmp_path / "q.wav"))
    audio = concat([1.0, voice, 1.0]).astype(np.float32)
    audio += np.random.default_rng(0).standard_normal(audio.shape[0]).astype(np.float32) * 1e-3
    onset, cut = SAMPLE_RATE, SAMPLE_RATE + round(0.45 * SAMPLE_RATE)
    heard = audio.copy()
    heard[onset:cut] *= 0.01
    after = cut // FRAME_SAMPLES + 1
    end = (after + 1) * FRAME_SAMPLES
    revision = {after: audio[end - round(0.75 * SAMPLE_RATE) : end]}

    def final(revisions: dict[int, np.ndarray] | None) -> list[str]:
        run = feed(list(frames(heard)), stt_config, stt_model, SessionClock(), False, revisions)
        finals = [e.text for e in run.events if isinstance(e, FinalTranscript)]
        assert len(finals) == 1, finals
        return normalize_words(finals[0])

    assert final(None)[:2] != ["how", "many"]
    assert final(revision) == normalize_words(text)
