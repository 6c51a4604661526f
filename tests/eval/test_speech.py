"""Spoken turns: espeak-ng by default, or the user's recordings `<id>-<turn>.wav` at any rate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from kame_cli.eval.questions import Question
from kame_cli.eval.speech import ESPEAK, RATE, check_voice, spoken_turns

QUESTION = Question("q1", "stem", ("What is two plus two?", "And three plus three?"))


def test_espeak_speaks_every_turn() -> None:
    check_voice(ESPEAK, [QUESTION])
    first, second = spoken_turns(QUESTION, ESPEAK)
    assert 0.8 * RATE < len(first) < 4 * RATE and 0.8 * RATE < len(second) < 4 * RATE
    assert float(np.abs(first).max()) > 0.05  # speech, not silence


def test_recordings_are_read_mono_at_the_front_end_rate(tmp_path: Path) -> None:
    t = np.arange(16_000) / 16_000
    tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    sf.write(tmp_path / "q1-1.wav", np.stack([tone, tone], axis=1), 16_000)  # stereo, 16 kHz, 1 s
    sf.write(tmp_path / "q1-2.flac", tone[:8000], 16_000)
    check_voice(str(tmp_path), [QUESTION])
    first, second = spoken_turns(QUESTION, str(tmp_path))
    assert first.ndim == 1 and abs(len(first) - RATE) <= 2 and abs(len(second) - RATE // 2) <= 2
    assert 0.25 < float(np.abs(first).max()) < 0.35
