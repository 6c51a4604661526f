"""The spoken questions: espeak-ng, or recorded files `<id>-<turn>.wav` (.flac, .ogg) from a folder."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from kame_cli.errors import ConfigError, printable
from kame_cli.eval.questions import Question

if TYPE_CHECKING:
    import numpy as np

RATE = 24_000
ESPEAK = "espeak-ng"
ESPEAK_VOICE = "en-us"
ESPEAK_WPM = 150
"""A little slower than espeak-ng's default: tiny.en hears it more reliably."""
_SUFFIXES = (".wav", ".flac", ".ogg")


def check_voice(voice: str, questions: Sequence[Question]) -> None:
    """Refuse a voice that cannot speak every turn (one line, exit 2) before any session starts."""
    if voice == ESPEAK:
        if shutil.which(ESPEAK) is None:
            raise ConfigError("--voice espeak-ng: espeak-ng is not installed: apt-get install espeak-ng")
        return
    folder = Path(voice)
    if not folder.is_dir():
        raise ConfigError(f"--voice {printable(voice)}: give espeak-ng or a folder of <id>-<turn>.wav files")
    for question in questions:
        for turn in range(len(question.turns)):
            if recorded_file(folder, question.id, turn) is None:
                raise ConfigError(
                    f"--voice {printable(voice)}: no {question.id}-{turn + 1}.wav (.flac, .ogg) for "
                    f"turn {turn + 1} of {question.id}: record it, or use --voice espeak-ng"
                )


def recorded_file(folder: Path, qid: str, turn: int) -> Path | None:
    for suffix in _SUFFIXES:
        path = folder / f"{qid}-{turn + 1}{suffix}"
        if path.is_file():
            return path
    return None


def spoken_turns(question: Question, voice: str) -> list[np.ndarray]:
    """Each turn of `question` as 24 kHz mono float32 speech."""
    if voice == ESPEAK:
        from kame_cli.audio_io.speech import espeak

        return [espeak(text, ESPEAK_VOICE, ESPEAK_WPM, RATE) for text in question.turns]
    from kame_cli.audio_io.files import open_audio_file
    from kame_cli.audio_io.frames import downmix
    from kame_cli.audio_io.resampling import resampled

    clips = []
    for turn in range(len(question.turns)):
        path = recorded_file(Path(voice), question.id, turn)
        assert path is not None  # check_voice ran first
        with open_audio_file(path) as sound:
            audio = downmix(sound.read(dtype="float32", always_2d=True))
            clips.append(resampled(audio, sound.samplerate, RATE))
    return clips
