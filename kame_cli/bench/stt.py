"""`kame bench stt`: streaming STT against the same model offline, on the same clips.

Each clip (espeak-ng questions by default, or recordings with `.txt` transcripts from
`--audio-dir`) is fed through the same `SttWorker.submit_frame` path a microphone uses, paced at
real time (or as fast as possible with `--fast`). In the same run, the same model decodes each whole
clip offline (faster-whisper's `transcribe`, same beam as the finals), which gives the offline WER
and, from its word timestamps, the time each word ends in the audio.

Per clip and overall: WER of the streaming finals, of the offline decode, and of the partials (the
last partial of each turn: what a listener had before the final); duplicated words (words of a
hypothesis inside a repeated 3-gram the reference does not repeat); commit lag (session time a word
was first committed, in a partial or else in the final, minus the time its end reached the worker);
final after end of speech (the last word's end in the turn -> its FinalTranscript); RTF; decodes
skipped. Paced, the figures are those of a live session on this machine. `--fast` gives the same
transcripts when the CPU keeps up, and lags in audio time only (the decodes' own time left out).
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import json
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TextIO

import typer

from kame_cli.stats import percentile

if TYPE_CHECKING:
    import numpy as np
    from faster_whisper import WhisperModel

    from kame_cli.backends.stt.config import SttConfig
    from kame_cli.backends.stt.model import SttModel
    from kame_cli.backends.stt.recognizer import RecognizerStats
    from kame_cli.clock import SessionClock
    from kame_cli.events import Event

QUESTIONS = (
    "How many legs does a spider have?",
    "What is the tallest mountain in the world?",
    "What is the weather like tomorrow in London?",
    "Please tell me a short story about a brave little dog who wanted to visit the ocean.",
    "How do I bake a loaf of bread at home?",
    "Why do cats sleep so much during the day?",
    "Can you explain how a rainbow forms after the rain stops and the sun comes out again?",
)
TARGET_WER_RATIO = 1.1
TARGET_LAG_P50_S = 0.5
TARGET_LAG_P95_S = 1.0
TARGET_FINAL_P50_S = 0.8
TARGET_RTF = 0.5
_LEAD_S = 0.5
_TAIL_S = 1.5
_AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
_RATE = 24_000
_FRAME = 1920


@dataclass(frozen=True, slots=True)
class Clip:
    name: str
    reference: str
    audio: np.ndarray
    """24 kHz mono float32, with `_LEAD_S` of silence before the speech and `_TAIL_S` after."""


def _padded(audio: np.ndarray, rate: int = _RATE) -> np.ndarray:
    import numpy as np

    lead, tail = np.zeros(round(_LEAD_S * rate), np.float32), np.zeros(round(_TAIL_S * rate), np.float32)
    return np.concatenate([lead, audio.astype(np.float32), tail])


def espeak_clips(voice: str, speed: int) -> list[Clip]:
    from kame_cli.audio_io.speech import espeak

    return [Clip(f"q{i + 1}", q, _padded(espeak(q, voice, speed))) for i, q in enumerate(QUESTIONS)]


def directory_clips(directory: Path, out: TextIO) -> list[Clip]:
    """Every audio file in `directory` that has a `.txt` transcript beside it."""
    from kame_cli.audio_io.files import open_audio_file
    from kame_cli.audio_io.frames import downmix
    from kame_cli.audio_io.resampling import resampled
    from kame_cli.errors import AudioFileError

    if not directory.is_dir():
        raise AudioFileError(f"--audio-dir {directory}: not a directory")
    clips = []
    for path in sorted(p for p in directory.iterdir() if p.suffix.lower() in _AUDIO_SUFFIXES):
        transcript = path.with_suffix(".txt")
        if not transcript.is_file():
            print(f"  skipped {path.name}: no {transcript.name} beside it", file=out)
            continue
        with open_audio_file(path) as sound:
            audio = resampled(downmix(sound.read(dtype="float32", always_2d=True)), sound.samplerate, _RATE)
        clips.append(Clip(path.stem, transcript.read_text(encoding="utf-8").strip(), _padded(audio)))
    if not clips:
        raise AudioFileError(
            f"--audio-dir {directory}: no .wav/.flac/.ogg file with a .txt transcript beside it"
        )
    return clips


def through_channel(
    clips: list[Clip], channel: str, seed: int, snr_db: float, offset: int = 0, every: int = 1
) -> list[Clip]:
    """Clips `offset::every` with their speech (the padding left as it is) through `channel`; the
    noisy channel's babble comes from the whole set."""
    from kame_cli.bench.channels import apply
    from kame_cli.errors import AudioFileError

    if channel == "noisy" and len(clips) < 2:
        raise AudioFileError("--channel noisy: needs at least two clips (the others make the babble)")
    lead, tail = round(_LEAD_S * _RATE), round(_TAIL_S * _RATE)
    pool = [c.audio[lead : len(c.audio) - tail] for c in clips]
    return [
        dataclasses.replace(clips[i], audio=_padded(apply(channel, pool, i, _RATE, seed, snr_db)))
        for i in range(offset, len(clips), every)
    ]


def describe_channel(channel: str, seed: int, snr_db: float) -> str:
    from kame_cli.bench.channels import PHONE_BAND_HZ, PHONE_RATE, TEMPO_RANGE

    return {
        "clean": "clean (as recorded)",
        "telephone": (
            f"telephone ({PHONE_RATE} Hz, {PHONE_BAND_HZ[0]}-{PHONE_BAND_HZ[1]} Hz band-pass, GSM 06.10)"
        ),
        "noisy": f"noisy (babble of three other clips at {snr_db:g} dB SNR, seed {seed})",
        "fast": f"fast (sox tempo {TEMPO_RANGE[0]}-{TEMPO_RANGE[1]} per clip, seed {seed})",
    }[channel]


# --- feeding the worker ---------------------------------------------------------------------------


class EventList:
    """An event sink that keeps everything, in order (the STT tests use it too)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[Event] = []

    def publish(self, event: Event) -> None:
        with self._lock:
            self._events.append(event)

    def snapshot(self) -> list[Event]:
        with self._lock:
            return list(self._events)


@dataclass(frozen=True, slots=True)
class StreamRun:
    """What one run of frames through an `SttWorker` gave, with the worker's own accounting."""

    events: list[Event]
    feed_start: float
    """Session time at which feeding began; paced, audio time `a` arrived at `feed_start + a`."""
    audio_s: float
    wall_s: float
    """From the first frame to the last final."""
    busy_s: float
    dropped_frames: int
    skipped_decodes: int
    stats: RecognizerStats


def feed(
    frames: Iterable[np.ndarray],
    cfg: SttConfig,
    model: SttModel,
    clock: SessionClock,
    paced: bool,
    revisions: Mapping[int, np.ndarray] | None = None,
) -> StreamRun:
    """Feed 24 kHz frames to a real `SttWorker` through `submit_frame`, paced like a microphone
    (frame i submitted (i + 1) x 80 ms after the start) or as fast as possible; `revisions[i]`
    through `submit_revision` right after frame i (the echo canceller's, as a session sends them)."""
    from kame_cli.backends.stt.worker import SttWorker
    from kame_cli.clock import FRAME_SECONDS

    sink = EventList()
    worker = SttWorker(cfg, sink, clock, model=model, realtime=paced)
    worker.start()
    count = 0
    try:
        feed_start = clock.now()
        for count, frame in enumerate(frames, start=1):
            if paced:
                delay = feed_start + count * FRAME_SECONDS - clock.now()
                if delay > 0:
                    time.sleep(delay)  # the microphone's pace, not a wait for a condition
            worker.submit_frame(frame)
            if revisions and (revision := revisions.get(count - 1)) is not None:
                worker.submit_revision(revision)
        worker.end_input()
        if not worker.wait_flushed(600.0):
            raise TimeoutError("STT did not finish a clip within 600 s")
        wall_s = clock.now() - feed_start
    finally:
        worker.stop()
    return StreamRun(
        events=sink.snapshot(),
        feed_start=feed_start,
        audio_s=count * FRAME_SECONDS,
        wall_s=wall_s,
        busy_s=worker.busy_s,
        dropped_frames=worker.dropped_frames,
        skipped_decodes=worker.skipped_decodes,
        stats=worker.stats,
    )


# --- scoring --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Offline:
    text: str
    words: list[str]
    """Normalized words of `text`."""
    ends: list[float]
    """Clip time (s, lead silence included) at which each of `words` ends."""


def offline_decode(whisper: WhisperModel, clip: Clip, beam: int) -> Offline:
    """The whole clip through faster-whisper's `transcribe` (30 s windows, its usual fallbacks)."""
    from kame_cli.audio_io.resampling import resampled
    from kame_cli.backends.stt.text import normalize_words

    segments, _ = whisper.transcribe(
        resampled(clip.audio, _RATE, 16_000), beam_size=beam, language="en", word_timestamps=True
    )
    texts, words, ends = [], [], []
    for segment in segments:
        texts.append(segment.text.strip())
        for word in segment.words or ():
            spelled = normalize_words(word.word)
            words += spelled
            ends += [word.end] * len(spelled)
    return Offline(" ".join(texts), words, ends)


@dataclass
class ClipResult:
    name: str
    reference_words: int
    final_text: str = ""
    offline_text: str = ""
    partial_text: str = ""
    errors: dict[str, int] = field(default_factory=dict)
    """Word errors of the `stream` finals, the `offline` decode and the `partials`."""
    duplicated: int = 0
    duplicated_partials: int = 0
    lags: list[float] = field(default_factory=list)
    final_after_speech: list[float] = field(default_factory=list)
    revised_finals: int = 0
    finals: int = 0
    audio_s: float = 0.0
    busy_s: float = 0.0
    skipped: int = 0
    dropped: int = 0


def _times(run: StreamRun, paced: bool, end_silence_s: float) -> tuple[list[tuple[str, float]], list[str]]:
    """(each final word with the time it was first committed, each turn's last partial text).

    A word of a final in the place of a word a partial of its turn had committed (aligned in order,
    the same word or not: the partials' WER tells how right they were) keeps that partial's time;
    the others are committed by the final. Paced: session times; fast: audio time
    the decode had reached (`PartialTranscript.audio_end`; a final: its turn's end of speech plus the
    closing silence)."""
    from kame_cli.backends.stt.text import normalize_words
    from kame_cli.events import FinalTranscript, PartialTranscript

    committed: list[tuple[str, float]] = []
    stream: list[tuple[str, float]] = []
    last_partials: list[str] = []
    last_partial = ""
    for event in run.events:
        if isinstance(event, PartialTranscript):
            at = event.t if paced else event.audio_end
            words = normalize_words(event.committed)
            committed += [(w, at) for w in words[len(committed) :]]
            last_partial = event.text
        elif isinstance(event, FinalTranscript):
            at = event.t if paced else event.audio_end + end_silence_s
            final = normalize_words(event.text)
            times = [at] * len(final)
            matcher = difflib.SequenceMatcher(a=[w for w, _ in committed], b=final, autojunk=False)
            for op, i1, i2, j1, j2 in matcher.get_opcodes():
                if op in ("equal", "replace"):
                    # A word the final spells otherwise was still committed then, in its place.
                    for k in range(j2 - j1):
                        times[j1 + k] = min(at, committed[min(i1 + k, i2 - 1)][1])
            stream += list(zip(final, times, strict=True))
            last_partials.append(last_partial)
            committed, last_partial = [], ""
    return stream, last_partials


def score_clip(clip: Clip, run: StreamRun, offline: Offline, paced: bool, end_silence_s: float) -> ClipResult:
    from kame_cli.backends.stt.text import duplicated_words, normalize_words, word_errors
    from kame_cli.events import FinalTranscript

    reference = normalize_words(clip.reference)
    finals = [e for e in run.events if isinstance(e, FinalTranscript)]
    stream, last_partials = _times(run, paced, end_silence_s)
    hyp = [w for w, _ in stream]
    partial_words = normalize_words(" ".join(last_partials))
    result = ClipResult(
        name=clip.name,
        reference_words=len(reference),
        final_text=" ".join(f.text for f in finals),
        offline_text=offline.text,
        partial_text=" ".join(last_partials),
        errors={
            "stream": word_errors(reference, hyp),
            "offline": word_errors(reference, offline.words),
            "partials": word_errors(reference, partial_words),
        },
        duplicated=duplicated_words(reference, hyp),
        duplicated_partials=duplicated_words(reference, partial_words),
        revised_finals=sum(f.revised for f in finals),
        finals=len(finals),
        audio_s=run.audio_s,
        busy_s=run.busy_s,
        skipped=run.skipped_decodes,
        dropped=run.dropped_frames,
    )
    origin = run.feed_start if paced else 0.0
    matcher = difflib.SequenceMatcher(a=offline.words, b=hyp, autojunk=False)
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            result.lags.append(stream[block.b + k][1] - (origin + offline.ends[block.a + k]))
    if paced:
        for final in finals:
            # The end of speech: the last offline word inside the turn, else where VAD put it.
            inside = [e for e in offline.ends if final.audio_start - 0.3 <= e <= final.audio_end + 0.3]
            speech_end = max(inside) if inside else final.audio_end
            result.final_after_speech.append(final.t - (run.feed_start + speech_end))
    return result


# --- the benchmark --------------------------------------------------------------------------------


def _parse_settings(settings: list[str], cfg: SttConfig) -> SttConfig:
    """`--set key=value` pairs applied to the `[stt]` settings (the profile's types and ranges)."""
    from kame_cli.errors import ConfigError
    from kame_cli.settings import override

    fields = {f.name: f for f in dataclasses.fields(cfg)}
    changes: dict[str, Any] = {}
    for item in settings:
        key, _, raw = item.partition("=")
        spec = fields.get(key.strip())
        if spec is None or not raw:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE with KEY one of {', '.join(fields)}")
        kind = type(getattr(cfg, spec.name))
        value: Any
        try:
            value = kind(raw) if kind in (int, float) else raw
        except ValueError as err:
            raise ConfigError(f"--set {item!r}: {spec.name} takes a {kind.__name__}") from err
        try:
            override(cfg, {spec.name: value})  # the type checks its own range
        except ConfigError:
            raise ConfigError(f"--set {item!r}: out of range for [stt] {spec.name}") from None
        changes[spec.name] = value
    return dataclasses.replace(cfg, **changes)


def _p(values: list[float], q: float) -> float | None:
    return round(percentile(values, q), 3) if values else None


def _fmt(value: float | None, unit: str = " s") -> str:
    return "n/a" if value is None else f"{value:.2f}{unit}"


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
    as_json: bool = False,
    every: int = 1,
    offset: int = 0,
    settings: list[str] | None = None,
    channel: str = "clean",
    seed: int = 0,
    snr_db: float = 10.0,
) -> None:
    """Run every clip streaming and offline; print per-clip results, then the figures and targets."""
    import numpy as np
    from faster_whisper import WhisperModel

    from kame_cli.backends.stt.config import SttConfig
    from kame_cli.backends.stt.model import load_stt_model
    from kame_cli.clock import SessionClock
    from kame_cli.settings import override

    out = sys.stderr if as_json else sys.stdout
    flags = {
        "model": model_name,
        "device": device,
        "cpu_threads": threads,
        "step_s": step_s,
        "beam_size": beam_size,
    }
    cfg = override(SttConfig(), flags)
    cfg = _parse_settings(settings or [], cfg)
    model = load_stt_model(cfg)
    offline_model = WhisperModel(
        model.path, device=model.device, compute_type=model.compute_type, cpu_threads=threads
    )
    clips = directory_clips(audio_dir, out) if audio_dir is not None else espeak_clips(voice, speed)
    clips = through_channel(clips, channel, seed, snr_db, offset, every)
    source = str(audio_dir) if audio_dir is not None else f"espeak-ng {voice} {speed} wpm"
    pace = "as fast as possible (lags in audio time)" if fast else "paced at real time"
    print(
        f"STT bench: {model.describe()}, {threads} thread(s), step {cfg.step_s} s, "
        f"final beam {cfg.beam_size} (offline the same), partial beam {cfg.partial_beam_size}",
        file=out,
    )
    print(f"clips: {len(clips)} from {source} (every {every} from {offset}), fed {pace}", file=out)
    print(f"channel: {describe_channel(channel, seed, snr_db)}", file=out)
    results: list[ClipResult] = []
    decode_ms: list[float] = []
    for clip in clips:
        offline = offline_decode(offline_model, clip, cfg.beam_size)
        frames = [f for f in np.array_split(clip.audio, np.arange(_FRAME, len(clip.audio), _FRAME))]
        frames = [f for f in frames if len(f) == _FRAME]
        run = feed(frames, cfg, model, SessionClock(), paced=not fast)
        decode_ms += list(run.stats.decode_ms)
        result = score_clip(clip, run, offline, paced=not fast, end_silence_s=cfg.end_silence_ms / 1000)
        results.append(result)
        err = result.errors
        print(
            f"  {clip.name}: words {result.reference_words}  errors stream {err['stream']} "
            f"offline {err['offline']} partials {err['partials']}  dup {result.duplicated}  "
            f"lag p50 {_fmt(_p(result.lags, 50))} p95 {_fmt(_p(result.lags, 95))}  "
            f"final {_fmt(_p(result.final_after_speech, 50))}  skipped {result.skipped}",
            file=out,
        )
        print(f"      stream:  {result.final_text}", file=out)
        print(f"      offline: {result.offline_text}", file=out)
    words = sum(r.reference_words for r in results)

    def wer(kind: str) -> float:
        return round(sum(r.errors[kind] for r in results) / max(words, 1), 4)

    lags = [lag for r in results for lag in r.lags]
    finals = [x for r in results for x in r.final_after_speech]
    audio_s = sum(r.audio_s for r in results)
    wer_stream, wer_offline = wer("stream"), wer("offline")
    ratio = round(wer_stream / wer_offline, 3) if wer_offline else None
    duplicated = sum(r.duplicated for r in results)
    lag50, lag95, final50 = _p(lags, 50), _p(lags, 95), _p(finals, 50)
    rtf = round(sum(r.busy_s for r in results) / max(audio_s, 1e-9), 3)
    figures: dict[str, Any] = {
        "clips": len(clips),
        "words": words,
        "paced": not fast,
        "channel": channel,
        "seed": seed,
        "snr_db": snr_db if channel == "noisy" else None,
        "model": model.name,
        "step_s": cfg.step_s,
        "beam": cfg.beam_size,
        "partial_beam": cfg.partial_beam_size,
        "wer_stream": wer_stream,
        "wer_offline": wer_offline,
        "wer_partials": wer("partials"),
        "wer_ratio": ratio,
        "duplicated_words": duplicated,
        "duplicated_words_partials": sum(r.duplicated_partials for r in results),
        "commit_lag_p50_s": lag50,
        "commit_lag_p95_s": lag95,
        "commit_lag_max_s": round(max(lags), 3) if lags else None,
        "final_after_speech_end_p50_s": final50,
        "final_after_speech_end_p95_s": _p(finals, 95),
        "finals": sum(r.finals for r in results),
        "finals_revised": sum(r.revised_finals for r in results),
        "rtf": rtf,
        "process_iter_p95_ms": round(percentile(decode_ms, 95), 1) if decode_ms else None,
        "decodes_skipped": sum(r.skipped for r in results),
        "frames_dropped": sum(r.dropped for r in results),
    }
    print(
        f"WER (numbers normalized, {words} words): streaming finals {wer_stream:.1%}, "
        f"offline {wer_offline:.1%} (ratio {ratio}, target <= {TARGET_WER_RATIO}: "
        f"{_mark(ratio is not None and ratio <= TARGET_WER_RATIO)}), partials {wer('partials'):.1%}",
        file=out,
    )
    print(
        f"duplicated words: finals {duplicated} (target 0: {_mark(duplicated == 0)}), "
        f"partials {figures['duplicated_words_partials']}",
        file=out,
    )
    lag_kind = "session time" if not fast else "audio time, decode time left out"
    print(
        f"commit lag ({lag_kind}): n={len(lags)} p50 {_fmt(lag50)} "
        f"(target <= {TARGET_LAG_P50_S}: {_mark(lag50 is not None and lag50 <= TARGET_LAG_P50_S)}) "
        f"p95 {_fmt(lag95)} (target <= {TARGET_LAG_P95_S}: "
        f"{_mark(lag95 is not None and lag95 <= TARGET_LAG_P95_S)}) max {_fmt(figures['commit_lag_max_s'])}",
        file=out,
    )
    if fast:
        print("final after end of speech: not measured when fed as fast as possible", file=out)
    else:
        print(
            f"final after end of speech: n={len(finals)} p50 {_fmt(final50)} (target <= "
            f"{TARGET_FINAL_P50_S}: {_mark(final50 is not None and final50 <= TARGET_FINAL_P50_S)}) "
            f"p95 {_fmt(figures['final_after_speech_end_p95_s'])}; "
            f"{figures['finals_revised']} of {figures['finals']} finals revised committed words",
            file=out,
        )
    print(
        f"real-time factor: {rtf:.3f} (target <= {TARGET_RTF}: {_mark(rtf <= TARGET_RTF)}); "
        f"process_iter p95 {figures['process_iter_p95_ms']} ms; decodes skipped "
        f"{figures['decodes_skipped']}; frames dropped {figures['frames_dropped']}",
        file=out,
    )
    if as_json:
        figures["per_clip"] = [
            {
                "name": r.name,
                "words": r.reference_words,
                "errors": r.errors,
                "duplicated_words": r.duplicated,
                "commit_lag_p50_s": _p(r.lags, 50),
                "commit_lag_p95_s": _p(r.lags, 95),
                "final_after_speech_end_p50_s": _p(r.final_after_speech, 50),
                "stream": r.final_text,
                "offline": r.offline_text,
                "partials": r.partial_text,
            }
            for r in results
        ]
        print(json.dumps(figures))


def _mark(ok: bool) -> str:
    return "ok" if ok else "MISSED"


class ChannelName(enum.StrEnum):
    clean = "clean"
    telephone = "telephone"
    noisy = "noisy"
    fast = "fast"


def register(bench_app: typer.Typer) -> None:
    @bench_app.command("stt")
    def stt_command(
        audio_dir: Annotated[
            Path | None,
            typer.Option("--audio-dir", help="Clips with .txt transcripts beside them (WAV/FLAC/OGG)."),
        ] = None,
        model: Annotated[
            str, typer.Option(help="faster-whisper size name, local directory, or auto.")
        ] = "auto",
        device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "cpu",
        threads: Annotated[int, typer.Option(min=1, help="CPU threads for CTranslate2.")] = 1,
        step: Annotated[float, typer.Option(min=0.05, help="Seconds of audio between re-decodes.")] = 0.25,
        beam: Annotated[
            int, typer.Option(min=1, max=16, help="Beam of finals and of the offline decode.")
        ] = 1,
        voice: Annotated[str, typer.Option(help="espeak-ng voice for the default clips.")] = "en-us",
        speed: Annotated[int, typer.Option(help="espeak-ng words per minute.")] = 150,
        fast: Annotated[
            bool, typer.Option("--fast", help="Feed as fast as possible: lags in audio time only.")
        ] = False,
        as_json: Annotated[
            bool, typer.Option("--json", help="Print one JSON object on stdout (the rest on stderr).")
        ] = False,
        every: Annotated[int, typer.Option(min=1, help="Take every N-th clip (a subset).")] = 1,
        offset: Annotated[int, typer.Option(min=0, help="First clip taken with --every.")] = 0,
        settings: Annotated[
            list[str] | None,
            typer.Option("--set", help="An [stt] setting for this run, KEY=VALUE (repeatable)."),
        ] = None,
        channel: Annotated[
            ChannelName,
            typer.Option(help="Apply to each clip: telephone (8 kHz GSM), noisy (babble), fast (tempo)."),
        ] = ChannelName.clean,
        seed: Annotated[int, typer.Option(help="Seed of the noisy and fast channels.")] = 0,
        snr: Annotated[float, typer.Option(help="Speech-to-babble ratio (dB) of --channel noisy.")] = 10.0,
    ) -> None:
        """Streaming STT vs the same model offline: WER, duplicated words, commit lag, final latency, RTF."""
        bench(
            audio_dir,
            model,
            device,
            threads,
            step,
            beam,
            voice,
            speed,
            fast,
            as_json,
            every,
            offset,
            settings,
            channel.value,
            seed,
            snr,
        )
