"""The tandem bench: spoken questions, one real-time session per profile, figures (a)-(e) and the ratio."""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kame_cli.errors import AudioFileError, ConfigError
from kame_cli.tandem.questions import RATE, Question, session_input

if TYPE_CHECKING:
    pass


QUESTIONS = (
    "What is the capital city of France?",
    "How many legs does a spider have?",
    "Who wrote the play Romeo and Juliet?",
    "What is the boiling point of water?",
    "How far away is the moon from the earth?",
    "Why is the sky blue during the day?",
)
_AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


def espeak_questions(
    texts: Sequence[str] = QUESTIONS, voice: str = "en-us", speed: int = 150
) -> list[Question]:
    from kame_cli.audio_io.speech import espeak

    return [Question(f"q{i + 1}", text, espeak(text, voice, speed)) for i, text in enumerate(texts)]


def directory_questions(directory: Path, note: Callable[[str], None]) -> list[Question]:
    """Every WAV/FLAC/OGG file in `directory` with a `.txt` transcript beside it, in name order."""
    from kame_cli.audio_io.files import open_audio_file
    from kame_cli.audio_io.frames import downmix
    from kame_cli.audio_io.resampling import resampled

    if not directory.is_dir():
        raise AudioFileError(f"--audio-dir {directory}: not a directory: give a folder of WAV/FLAC + .txt")
    questions = []
    for path in sorted(p for p in directory.iterdir() if p.suffix.lower() in _AUDIO_SUFFIXES):
        transcript = path.with_suffix(".txt")
        if not transcript.is_file():
            note(f"  skipped {path.name}: no {transcript.name} beside it")
            continue
        with open_audio_file(path) as sound:
            audio = resampled(downmix(sound.read(dtype="float32", always_2d=True)), sound.samplerate, RATE)
        questions.append(Question(path.stem, transcript.read_text(encoding="utf-8").strip(), audio))
    if not questions:
        raise AudioFileError(
            f"--audio-dir {directory}: no .wav/.flac/.ogg file with a .txt transcript beside it"
        )
    return questions


def run_bench(
    *,
    audio_dir: Path | None,
    profiles: Sequence[str],
    model: str | None,
    gap_s: float,
    plot: Path | None,
    log_root: Path | None,
    as_json: bool,
) -> int:
    """The whole bench; returns the exit code (1 if a session failed)."""
    from kame_cli.profiles import load_profile
    from kame_cli.tandem.measured import SessionFailed, measure_run

    out = sys.stderr if as_json else sys.stdout

    def say(line: str) -> None:
        print(line, file=out, flush=True)

    if plot is not None and plot.suffix.lower() not in (".png", ".svg"):
        raise ConfigError(f"--plot {plot}: give a .png or .svg file name")
    loaded = [load_profile(spec) for spec in profiles]  # a bad profile: one line before any work
    questions = directory_questions(audio_dir, say) if audio_dir is not None else espeak_questions()
    source = str(audio_dir) if audio_dir is not None else "espeak-ng en-us 150 wpm"
    runs: list[dict[str, Any]] = []
    failed = False
    from kame_cli.session.template import templates_for_children

    with tempfile.TemporaryDirectory(prefix="kame-bench-tandem-") as tmp, templates_for_children():
        wav = Path(tmp) / "questions.wav"
        spans = session_input(questions, gap_s, wav)
        for profile in loaded:
            log_dir = (log_root / profile.name) if log_root is not None else Path(tmp) / f"log-{profile.name}"
            say(
                f"tandem bench: profile {profile.name}, front-end {model or profile.frontend.model}, "
                f"{len(questions)} questions ({source}), {gap_s:g} s after each, real time"
            )
            try:
                result = measure_run(profile, wav, log_dir, spans, model=model, say=say)
            except SessionFailed as err:
                print(f"kame: {err}", file=sys.stderr)
                return 1
            runs.append(result)
            if result["error"]:
                failed = True
                say(f"  session failed: {result['error']}")
            if plot is not None:
                target = _plot_path(plot, profile.name, len(loaded))
                from kame_cli.plot.timeline import draw_session

                draw_session(log_dir, target, title=f"kame · {profile.name} · {len(questions)} questions")
                say(f"  timeline: {target}")
    if as_json:
        first = dict(runs[0])
        first["runs"] = runs
        print(json.dumps(first))
    return 1 if failed else 0


def _plot_path(plot: Path, profile: str, count: int) -> Path:
    return plot if count == 1 else plot.with_name(f"{plot.stem}-{profile}{plot.suffix}")
