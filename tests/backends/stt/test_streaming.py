"""Acceptance of the streaming recognizer on real tiny.en and espeak-ng speech, through SttWorker."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from kame_cli.backends.stt.text import normalize_words, word_error_rate
from kame_cli.events import BackendStatus, FinalTranscript, PartialTranscript
from tests.backends.stt.streams import partials, run_stream, transcribe_stream, transcripts
from tests.support.speech import concat, frames, silence, white_noise


def _fast(audio: np.ndarray, cfg, model) -> list:
    return transcribe_stream(frames(audio), cfg, model=model)


@pytest.fixture(scope="module")
def question_runs(questions, stt_config, stt_model) -> list[list]:
    """Each question alone, with silence before and after, fed as fast as possible."""
    return [_fast(concat([0.5, q.audio, 1.5]), stt_config, stt_model) for q in questions]


def test_questions_are_transcribed_with_their_key_words(questions, question_runs) -> None:
    finals = [transcripts(events) for events in question_runs]
    assert all(len(f) == 1 for f in finals), [[x.text for x in f] for f in finals]
    texts = [f[0].text for f in finals]
    wer = word_error_rate([q.text for q in questions], texts)
    assert wer <= 0.10, f"WER {wer:.1%}: {texts}"
    for question, text in zip(questions, texts, strict=True):
        assert question.key_word in normalize_words(text), (question.text, text)
    assert any(len(normalize_words(q.text)) >= 12 for q in questions)


def test_committed_text_only_grows_and_tentative_never_contradicts_it(question_runs) -> None:
    for events in question_runs:
        parts = partials(events)
        assert len(parts) >= 2, "a question several seconds long gives several partials"
        assert parts[-1].committed, "words get committed before the end of the turn"
        for earlier, later in itertools.pairwise(parts):
            assert later.t >= earlier.t and later.audio_end > earlier.audio_end
            assert normalize_words(later.committed)[
                : len(normalize_words(earlier.committed))
            ] == normalize_words(earlier.committed)
        for part in parts:
            committed = normalize_words(part.committed)
            assert normalize_words(part.text)[: len(committed)] == committed
        final = transcripts(events)[0]
        last_committed = normalize_words(parts[-1].committed)
        # The final is decoded afresh; `revised` says whether it kept the committed words.
        assert final.revised == (normalize_words(final.text)[: len(last_committed)] != last_committed)
        assert final.partial_text == parts[-1].text
        assert final.t >= parts[-1].t


def test_final_times_cover_the_speech(question_runs, questions) -> None:
    for events, question in zip(question_runs, questions, strict=True):
        final = transcripts(events)[0]
        speech_end = 0.5 + len(question.audio) / 24_000
        assert final.audio_start == pytest.approx(0.5, abs=0.2)
        assert final.audio_end == pytest.approx(speech_end, abs=0.3)


@pytest.mark.parametrize("noise", ["silence", "white noise"])
def test_silence_and_noise_produce_no_transcript(noise, stt_config, stt_model) -> None:
    audio = silence(5.0) if noise == "silence" else white_noise(5.0, level=0.1)
    events = _fast(audio, stt_config, stt_model)
    assert [e for e in events if isinstance(e, PartialTranscript | FinalTranscript)] == []
    assert [e.state for e in events if isinstance(e, BackendStatus)] == ["ok"]


def test_real_time_feed_gives_the_same_final_as_fast_feed(questions, stt_config, stt_model) -> None:
    audio = concat([0.3, questions[0].audio, 1.0])
    fast = transcripts(_fast(audio, stt_config, stt_model))
    paced = run_stream(frames(audio), stt_config, model=stt_model, paced=True)
    assert paced.wall_s >= len(audio) / 24_000 - 0.1, "the paced feed keeps to the wall clock"
    assert paced.dropped_frames == 0
    assert [f.text for f in transcripts(paced.events)] == [f.text for f in fast]
    assert len(fast) == 1 and "spider" in normalize_words(fast[0].text)


def test_two_questions_a_pause_apart_give_two_finals(questions, stt_config, stt_model) -> None:
    first, second = questions[1], questions[2]
    audio = concat([0.5, first.audio, 1.5, second.audio, 1.0])
    finals = transcripts(_fast(audio, stt_config, stt_model))
    assert len(finals) == 2, [f.text for f in finals]
    assert first.key_word in normalize_words(finals[0].text)
    assert second.key_word in normalize_words(finals[1].text)
    second_start = 0.5 + len(first.audio) / 24_000 + 1.5
    assert finals[0].audio_end < finals[1].audio_start
    assert finals[1].audio_start == pytest.approx(second_start, abs=0.2)


def test_end_of_input_flushes_a_turn_still_open(questions, stt_config, stt_model) -> None:
    question = questions[3]
    finals = transcripts(_fast(concat([0.5, question.audio]), stt_config, stt_model))
    assert len(finals) == 1 and question.key_word in normalize_words(finals[0].text)


def test_a_long_turn_is_trimmed_without_losing_or_repeating_words(stt_config, stt_model, tmp_path) -> None:
    from tests.support.speech import load, speak

    sentences = [
        "I would like to plan a trip to the mountains next summer with my family",
        "we want to hike every day and sleep in small wooden cabins",
    ]
    parts: list = [0.5]
    for i, sentence in enumerate(sentences):
        parts += [load(speak(sentence, tmp_path / f"s{i}.wav")), 0.25]  # pauses too short to end the turn
    cfg = dataclasses.replace(stt_config, trim_window_s=3.0, max_window_s=6.0)
    run = run_stream(frames(concat([*parts, 1.0])), cfg, model=stt_model)
    finals = transcripts(run.events)
    assert len(finals) == 1
    assert run.stats.trims >= 1
    reference = " ".join(sentences)
    assert word_error_rate([reference], [finals[0].text]) <= 0.15, finals[0].text
    assert len(normalize_words(finals[0].text)) <= len(normalize_words(reference)) + 1


def test_the_recognizer_alone_takes_uneven_chunks(questions, stt_config, stt_model) -> None:
    import soxr

    from kame_cli.backends.stt.recognizer import StreamingRecognizer

    question = questions[1]
    audio16 = soxr.resample(concat([0.5, question.audio, 1.0]), 24_000, 16_000).astype(np.float32)
    recognizer = StreamingRecognizer(stt_model, stt_config)
    recognizer.init()
    events, start, rng = [], 0, np.random.default_rng(2)
    while start < len(audio16):
        size = int(rng.integers(300, 9000))
        recognizer.insert_audio(audio16[start : start + size])
        start += size
        events += recognizer.process_iter()
    events += recognizer.finish()
    finals = [e for e in events if isinstance(e, FinalTranscript)]
    assert len(finals) == 1 and question.key_word in normalize_words(finals[0].text)
    assert recognizer.audio_time == pytest.approx(len(audio16) / 16_000)
    assert recognizer.finish() == []
