"""`kame bench stt`: streaming STT commit lag, final latency, accuracy and real-time factor.

Each clip (espeak-ng questions by default, or recordings with `.txt` transcripts from
`--audio-dir`) is fed through the same `SttWorker.submit_frame` path a microphone uses, paced at
real time (or as fast as possible with `--fast`). Word ends in the audio come from forced
alignment of the reference text with the same Whisper model; a word's commit lag is the session
time at which it first appears committed (in a partial, or in the final) minus the time its end
reached the worker.
"""

from __future__ import annotations

import difflib
import subprocess
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from kame_cli.stats import percentile

if TYPE_CHECKING:
    import numpy as np

    from kame_cli.backends.stt.config import SttConfig
    from kame_cli.backends.stt.model import SttModel
    from kame_cli.backends.stt.worker import StreamRun

QUESTIONS = (
    "How many legs does a spider have?",
    "What is the tallest mountain in the world?",
    "What is the weather like tomorrow in London?",
    "Please tell me a short story about a brave little dog who wanted to visit the ocean.",
    "How do I bake a loaf of bread at home?",
    "Why do cats sleep so much during the day?",
    "Can you explain how a rainbow forms after the rain stops and the sun comes out again?",
)
TARGET_P50_S = 0.6
TARGET_P95_S = 1.2
TARGET_RTF = 0.5
_LEAD_S = 0.5
_TAIL_S = 1.5
_AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


@dataclass(frozen=True, slots=True)
class Clip:
    name: str
    reference: str
    audio: np.ndarray
    """24 kHz mono float32, with silence before and after the speech."""


@dataclass(frozen=True, slots=True)
class ClipResult:
    clip: Clip
    final_text: str
    errors: int
    reference_words: int
    lags: list[float]
    final_latencies: list[float]


def resampled(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """A whole clip at `rate_out`, through the same streaming resampler the live audio path uses."""
    import numpy as np

    from kame_cli.audio_io.resampling import StreamResampler

    resampler = StreamResampler(rate_in, rate_out)
    return np.concatenate([resampler.process(audio), resampler.flush()])


def espeak(text: str, voice: str, speed: int, rate: int = 24_000) -> np.ndarray:
    """espeak-ng speech for `text` at `rate` Hz."""
    import soundfile as sf

    out = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "-z", "--stdout", text], check=True, capture_output=True
    ).stdout
    audio, native = sf.read(BytesIO(out), dtype="float32")
    return resampled(audio, native, rate)


def _padded(audio: np.ndarray, rate: int = 24_000) -> np.ndarray:
    import numpy as np

    lead, tail = np.zeros(round(_LEAD_S * rate), np.float32), np.zeros(round(_TAIL_S * rate), np.float32)
    return np.concatenate([lead, audio.astype(np.float32), tail])


def espeak_clips(voice: str, speed: int) -> list[Clip]:
    return [Clip(f"q{i + 1}", q, _padded(espeak(q, voice, speed))) for i, q in enumerate(QUESTIONS)]


def directory_clips(directory: Path) -> list[Clip]:
    """Every audio file in `directory` that has a `.txt` transcript beside it."""
    from kame_cli.audio_io.files import open_audio_file
    from kame_cli.audio_io.frames import downmix
    from kame_cli.errors import AudioFileError

    if not directory.is_dir():
        raise AudioFileError(f"--audio-dir {directory}: not a directory")
    clips = []
    for path in sorted(p for p in directory.iterdir() if p.suffix.lower() in _AUDIO_SUFFIXES):
        transcript = path.with_suffix(".txt")
        if not transcript.is_file():
            print(f"  skipped {path.name}: no {transcript.name} beside it")
            continue
        with open_audio_file(path) as sound:
            audio = resampled(downmix(sound.read(dtype="float32", always_2d=True)), sound.samplerate, 24_000)
        clips.append(Clip(path.stem, transcript.read_text(encoding="utf-8").strip(), _padded(audio)))
    if not clips:
        raise AudioFileError(
            f"--audio-dir {directory}: no .wav/.flac/.ogg file with a .txt transcript beside it"
        )
    return clips


def _word_ends(model: SttModel, clip: Clip) -> list[float]:
    """Audio time of the end of each reference word (forced alignment on the clip)."""
    from kame_cli.backends.stt.config import SttConfig
    from kame_cli.backends.stt.decoder import WindowDecoder

    audio16 = resampled(clip.audio, 24_000, 16_000)
    aligned = WindowDecoder(model, SttConfig()).align_text(audio16, clip.reference)
    return [end for _, end in aligned]


def _commits(run: StreamRun) -> tuple[list[str], list[float], list[float]]:
    """(hypothesis words, session time each was first committed, final latency of each turn)."""
    from kame_cli.backends.stt.text import normalize_words
    from kame_cli.events import FinalTranscript, PartialTranscript

    words: list[str] = []
    times: list[float] = []
    turn_times: list[float] = []
    latencies = []
    for event in run.events:
        if isinstance(event, PartialTranscript):
            committed = normalize_words(event.committed)
            turn_times += [event.t] * (len(committed) - len(turn_times))
        elif isinstance(event, FinalTranscript):
            final = normalize_words(event.text)
            turn_times = turn_times[: len(final)] + [event.t] * (len(final) - len(turn_times))
            words += final
            times += turn_times
            turn_times = []
            latencies.append(event.t - (run.feed_start + event.audio_end))
    return words, times, latencies


def run_clip(model: SttModel, cfg: SttConfig, clip: Clip, paced: bool) -> tuple[ClipResult, StreamRun]:
    import numpy as np

    from kame_cli.backends.stt.text import normalize_words, word_errors
    from kame_cli.backends.stt.worker import run_stream, transcripts
    from kame_cli.clock import SessionClock

    frames = [f for f in np.array_split(clip.audio, np.arange(1920, len(clip.audio), 1920)) if len(f) == 1920]
    run = run_stream(frames, cfg, model=model, clock=SessionClock(), paced=paced)
    final_text = " ".join(f.text for f in transcripts(run.events))
    reference = normalize_words(clip.reference)
    hyp_words, commit_times, final_latencies = _commits(run)
    lags: list[float] = []
    if paced:
        ends = _word_ends(model, clip)
        matcher = difflib.SequenceMatcher(a=reference, b=hyp_words, autojunk=False)
        for block in matcher.get_matching_blocks():
            for k in range(block.size):
                if block.a + k < len(ends):
                    lags.append(commit_times[block.b + k] - (run.feed_start + ends[block.a + k]))
    return ClipResult(
        clip=clip,
        final_text=final_text,
        errors=word_errors(reference, normalize_words(final_text)),
        reference_words=len(reference),
        lags=lags,
        final_latencies=final_latencies if paced else [],
    ), run


def _mark(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def bench(
    audio_dir: Path | None = None,
    model_name: str = "auto",
    device: str = "cpu",
    threads: int = 1,
    step_s: float = 0.25,
    beam_size: int = 1,
    voice: str = "en-us",
    speed: int = 150,
    fast: bool = False,
) -> None:
    """Run every clip and print per-clip results, then the figures against their targets."""
    from kame_cli.backends.stt.config import SttConfig
    from kame_cli.backends.stt.model import load_stt_model

    cfg = SttConfig(model=model_name, device=device, cpu_threads=threads, step_s=step_s, beam_size=beam_size)
    model = load_stt_model(cfg)
    clips = directory_clips(audio_dir) if audio_dir is not None else espeak_clips(voice, speed)
    source = str(audio_dir) if audio_dir is not None else f"espeak-ng {voice} {speed} wpm"
    pace = "as fast as possible" if fast else "paced at real time"
    print(f"STT bench: {model.describe()}, {threads} thread(s), step {step_s} s, beam {beam_size}")
    print(f"clips: {len(clips)} from {source}, fed {pace}")
    results = []
    audio_s = busy_s = wall_s = 0.0
    decode_ms: list[float] = []
    dropped = skipped = 0
    for clip in clips:
        result, run = run_clip(model, cfg, clip, paced=not fast)
        results.append(result)
        audio_s += run.audio_s
        busy_s += run.busy_s
        wall_s += run.wall_s
        decode_ms += list(run.stats.decode_ms)
        dropped += run.dropped_frames
        skipped += run.skipped_decodes
        print(f"  {clip.name:>10}  errors {result.errors}/{result.reference_words}  {result.final_text!r}")
    errors = sum(r.errors for r in results)
    words = sum(r.reference_words for r in results)
    print(f"WER: {errors / max(words, 1):.1%} ({errors} errors / {words} words, normalized text)")
    rtf = busy_s / audio_s
    print(
        f"real-time factor: {rtf:.3f} (worker busy {busy_s:.1f} s / audio {audio_s:.1f} s; "
        f"wall {wall_s:.1f} s)  target <= {TARGET_RTF}: {_mark(rtf <= TARGET_RTF)}"
    )
    if decode_ms:
        print(
            f"process_iter: n={len(decode_ms)} p50 {percentile(decode_ms, 50):.0f} ms "
            f"p95 {percentile(decode_ms, 95):.0f} ms max {max(decode_ms):.0f} ms"
        )
    if fast:
        print("commit lag: not measured when fed as fast as possible (run without --fast)")
        return
    lags = [lag for r in results for lag in r.lags]
    finals = [lat for r in results for lat in r.final_latencies]
    if lags:
        p50, p95 = percentile(lags, 50), percentile(lags, 95)
        print(
            f"commit lag (word end -> first committed): n={len(lags)} p50 {p50:.2f} s  p95 {p95:.2f} s  "
            f"p99 {percentile(lags, 99):.2f} s  max {max(lags):.2f} s"
        )
        print(
            f"  targets: p50 <= {TARGET_P50_S} s: {_mark(p50 <= TARGET_P50_S)}; "
            f"p95 <= {TARGET_P95_S} s: {_mark(p95 <= TARGET_P95_S)}"
        )
    else:
        print("commit lag: n=0 (no reference word was recognized): targets MISSED")
    if finals:
        print(
            f"final latency (speech end -> FinalTranscript): n={len(finals)} "
            f"p50 {percentile(finals, 50):.2f} s p95 {percentile(finals, 95):.2f} s"
        )
    else:
        print("final latency: n=0 (no FinalTranscript was published)")
    print(f"frames dropped: {dropped}; partial decodes skipped to catch up: {skipped}")


def register(bench_app: typer.Typer) -> None:
    @bench_app.command("stt")
    def stt_command(
        audio_dir: Annotated[
            Path | None,
            typer.Option(
                "--audio-dir", help="Clips with .txt transcripts beside them (e.g. ../shared/audio)."
            ),
        ] = None,
        model: Annotated[
            str, typer.Option(help="faster-whisper size name, local directory, or auto.")
        ] = "auto",
        device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "cpu",
        threads: Annotated[int, typer.Option(min=1, help="CPU threads for CTranslate2.")] = 1,
        step: Annotated[float, typer.Option(min=0.05, help="Seconds of audio between re-decodes.")] = 0.25,
        beam: Annotated[int, typer.Option(min=1, help="Beam size.")] = 1,
        voice: Annotated[str, typer.Option(help="espeak-ng voice for the default clips.")] = "en-us",
        speed: Annotated[int, typer.Option(help="espeak-ng words per minute.")] = 150,
        fast: Annotated[
            bool, typer.Option("--fast", help="Feed as fast as possible (no commit lag).")
        ] = False,
    ) -> None:
        """Streaming STT: per-word commit lag p50/p95, final latency, WER and real-time factor."""
        bench(audio_dir, model, device, threads, step, beam, voice, speed, fast)
