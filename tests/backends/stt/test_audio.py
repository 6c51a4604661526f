from __future__ import annotations

import numpy as np
import soxr
from faster_whisper.vad import get_vad_model

from kame_cli.audio_io.resampling import StreamResampler
from kame_cli.backends.stt.audio import VAD_WINDOW, WHISPER_RATE, StreamingVad
from tests.support.speech import concat, frames


def test_stream_resampler_matches_one_shot_resampling() -> None:
    t = np.arange(24_000 * 2) / 24_000
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    resampler = StreamResampler(24_000, WHISPER_RATE)
    streamed = np.concatenate([*(resampler.process(f) for f in frames(tone)), resampler.flush()])
    assert abs(len(streamed) - len(tone) * 2 // 3) <= 2
    whole = soxr.resample(tone, 24_000, 16_000)
    middle = slice(1000, len(whole) - 1000)
    assert np.max(np.abs(streamed[middle] - whole[middle])) < 1e-3
    spectrum = np.abs(np.fft.rfft(streamed[middle]))
    peak_hz = np.argmax(spectrum) * 16_000 / len(streamed[middle])
    assert abs(peak_hz - 440) < 2
    # After flush + reset (what the worker does at each end of input) the next stream starts clean.
    resampler.reset()
    again = np.concatenate([*(resampler.process(f) for f in frames(tone)), resampler.flush()])
    np.testing.assert_array_equal(again, streamed)


def test_streaming_vad_equals_one_call_over_the_whole_audio(questions) -> None:
    audio = soxr.resample(concat([0.5, questions[0].audio, 1.0]), 24_000, 16_000).astype(np.float32)
    audio = audio[: len(audio) // VAD_WINDOW * VAD_WINDOW]
    reference = get_vad_model()(audio)
    vad = StreamingVad()
    rng = np.random.default_rng(1)
    chunks, start = [], 0
    while start < len(audio):
        size = int(rng.integers(100, 3000))
        chunks.append(vad.push(audio[start : start + size]))
        start += size
    streamed = np.concatenate(chunks)
    np.testing.assert_allclose(streamed, reference, atol=1e-5)
    speech_start = round(0.5 * 16_000) // VAD_WINDOW
    assert streamed[: speech_start - 2].max() < 0.2
    assert np.median(streamed[speech_start + 5 : speech_start + 40]) > 0.8
