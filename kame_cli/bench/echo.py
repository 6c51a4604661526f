"""`kame bench echo`: the echo canceller in simulated rooms, with the STT listening.

Per seed: a shoebox room (pyroomacoustics; speaker-to-mic 0.3-1.5 m, RT60 0.2-0.6 s), a duplex
card with a device delay of 20-200 ms (70 % output, 30 % input latency) at 48 kHz, and an echo
level of -6..+6 dB against the user's voice at the microphone. The assistant speaks three times;
the user speaks once, during the second (double talk). The assistant's frames go through the
speaker's real callback (resampled to the card's rate, tapped as played), the room, and the
microphone's real callback (resampled back) into the session's microphone-path hook, and from there
to the real streaming STT (`SttWorker`, tiny.en). One simulation gives the AEC-off path (the raw
microphone, which is what `--aec off` hands on, bit for bit) and the AEC-on path; a second, with the
assistant silent, gives the user's speech alone for the clean WER.

The assistant's voice is speech (espeak-ng), not the `random:tiny` front-end's output: that model
babbles noise-like audio, which no recognizer turns into words, so it would make "echo words"
trivially zero with or without the canceller.

`--rooms wide` draws from a wider set (`RoomSetup.draw_wide`: RT60 up to 0.9 s, a soft-clipping
loudspeaker, background noise, the user 0.8-2 m away, a hidden delay jump mid-session).
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from kame_cli.bench.interval import ratio_interval
from kame_cli.clock import FRAME_SAMPLES, FRAME_SECONDS, SAMPLE_RATE

if TYPE_CHECKING:
    import numpy as np

    from kame_cli.audio_io.room import RoomSetup
    from kame_cli.backends.stt.model import SttModel

ASSISTANT_LINES = (
    "Sure, I can help with that. The train leaves the central station at a quarter past eight.",
    "Good question. Most spiders have eight legs and many of them have eight eyes as well.",
    "The weather tomorrow looks dry in the morning with some rain arriving in the late afternoon.",
    "Let me think about it for a moment. A loaf of bread needs flour, water, salt and some yeast.",
    "Rainbows form when sunlight is bent and reflected inside tiny drops of water in the air.",
    "I would suggest leaving a little earlier, because the roads are usually busy around noon.",
    "Mount Everest is the tallest mountain above sea level, at almost nine thousand meters.",
    "Cats sleep for most of the day to save energy for hunting, even when they live indoors.",
)
USER_LINES = (
    "Wait, what time does the last bus go back home tonight?",
    "Can you tell me how far it is to the nearest pharmacy?",
    "Hold on, I asked about the price of the tickets, not the time.",
    "Please remind me to call my sister after lunch tomorrow.",
)
TARGET_ERLE_DB = 25.0
TARGET_WER_RATIO = 1.2
TARGET_CPU_MS = 5.0
DEVICE_RATE = 48_000
_USER_RMS_DBFS = -26.0
"""The user's voice at the microphone (active speech RMS): it sets the microphone's gain."""
_SOURCE_RMS_DBFS = -18.0
"""The assistant's voice as handed to the speaker (a TTS-like output level), and the user's dry voice
(the same source level: the loudspeaker then plays `level_db` louder than the user speaks)."""
_GAP_S = 2.0
_USER_LEAD_S = 0.8  # the user starts this long after the assistant's second turn starts
_USER_CLIP_S = (2.0, 7.0)


@dataclass(frozen=True, slots=True)
class SeedResult:
    seed: int
    distance_m: float
    rt60_s: float
    device_delay_ms: float
    level_db: float
    user_distance_m: float
    speaker_limit: float | None
    noise_snr_db: float | None
    jump_ms: float
    """The hidden delay jump (0: none)."""
    echo_to_user_db: float
    """The echo's level at the microphone against the user's voice there (active RMS)."""
    user_clip: str
    erle_db: float
    """Power ratio over every assistant-only frame (what leaks through, onsets included)."""
    erle_frame_median_db: float
    """The median frame's ERLE (the steady state)."""
    user_kept_db: float
    """The user's voice in double talk against what the canceller added to it or took from it."""
    echo_words_aec_off: int
    echo_words_aec_on: int
    echo_text_aec_off: str
    echo_text_aec_on: str
    doubletalk_errors: int
    doubletalk_errors_aec_off: int
    clean_errors: int
    reference_words: int
    doubletalk_text: str
    clean_text: str
    delay_estimate_ms: float
    delay_error_ms: float
    cpu_ms_per_frame: float
    cpu_ms_max: float
    ideal_doubletalk_errors: dict[str, int] | None = None
    """`--ideal`: the user's errors in double talk under what the ideal filter of each span (ms) leaves."""
    ducked_s: float = 0.0
    """How long the assistant was turned down because the user talked over it (barge-in ducking)."""


@dataclass(frozen=True, slots=True)
class _Scene:
    far: np.ndarray  # 24 kHz, the assistant's frames as the front-end would hand them out
    near: np.ndarray  # 24 kHz, the user's dry voice (before the room)
    assistant: list[tuple[float, float]]
    user: tuple[float, float]
    reference: str
    clip: str


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _active_rms(x: np.ndarray) -> float:
    import numpy as np

    frames = x[: x.shape[0] // 480 * 480].reshape(-1, 480)
    power = np.mean(frames**2, axis=1)
    active = power[power > 10 ** (-50 / 10)]
    return float(np.sqrt(np.mean(active))) if active.size else 0.0


def _user_clips(audio_dir: Path | None, voice: str) -> list[tuple[str, str, np.ndarray]]:
    """(name, reference, 24 kHz audio) for the user's lines: espeak-ng, or real speech from a folder."""
    from kame_cli.audio_io.speech import espeak
    from kame_cli.bench.stt import directory_clips

    if audio_dir is None:
        return [
            (f"espeak:{voice}:{i + 1}", line, espeak(line, voice, 150)) for i, line in enumerate(USER_LINES)
        ]
    import io

    clips = directory_clips(audio_dir, io.StringIO())  # its "skipped" lines would break --json
    lo, hi = _USER_CLIP_S
    chosen = []
    for clip in clips:
        speech = clip.audio[12_000:-36_000]  # directory_clips pads 0.5 s before and 1.5 s after
        if lo <= speech.shape[0] / 24_000 <= hi:
            chosen.append((clip.name, clip.reference, speech))
    if not chosen:
        from kame_cli.errors import AudioFileError

        raise AudioFileError(f"--audio-dir {audio_dir}: no clip with a transcript lasts {lo:.0f}-{hi:.0f} s")
    return chosen


def _scene(
    rng: np.random.Generator, users: list[tuple[str, str, np.ndarray]], assistant_voice: str
) -> _Scene:
    import numpy as np

    from kame_cli.audio_io.speech import espeak

    lines = rng.choice(len(ASSISTANT_LINES), size=4, replace=False)
    a1 = espeak(ASSISTANT_LINES[lines[0]], assistant_voice, 165)
    a2 = np.concatenate([espeak(ASSISTANT_LINES[lines[1]], assistant_voice, 165),
                         espeak(ASSISTANT_LINES[lines[2]], assistant_voice, 165)])  # fmt: skip
    a3 = espeak(ASSISTANT_LINES[lines[3]], assistant_voice, 165)
    name, reference, user = users[int(rng.integers(len(users)))]
    sr = 24_000
    t1 = 0.5
    t2 = t1 + a1.shape[0] / sr + _GAP_S
    tu = t2 + _USER_LEAD_S
    t3 = max(t2 + a2.shape[0] / sr, tu + user.shape[0] / sr) + _GAP_S
    end = t3 + a3.shape[0] / sr + _GAP_S
    n = math.ceil(end * sr / 1920) * 1920
    far, near = np.zeros(n, np.float32), np.zeros(n, np.float32)
    spans = []
    for start, clip in ((t1, a1), (t2, a2), (t3, a3)):
        i = round(start * sr)
        far[i : i + clip.shape[0]] = clip
        spans.append((start, start + clip.shape[0] / sr))
    i = round(tu * sr)
    near[i : i + user.shape[0]] = user * (10 ** (_SOURCE_RMS_DBFS / 20) / max(_active_rms(user), 1e-9))
    far *= 10 ** (_SOURCE_RMS_DBFS / 20) / max(_active_rms(far), 1e-9)
    return _Scene(far, near, spans, (tu, tu + user.shape[0] / sr), reference, name)


def _simulate(
    scene: _Scene,
    rir: np.ndarray,
    near: np.ndarray,
    setup: RoomSetup,
    with_assistant: bool,
    seed: int,
    engine: str,
    residual_suppression: bool = False,
    duck_db: float = 0.0,
) -> dict[str, Any]:
    """Runs the scene through the speaker callback, the room, the mic callback and the session hook."""
    import numpy as np

    from kame_cli.audio_io.aec import EchoCanceller
    from kame_cli.audio_io.aec_wiring import MicrophoneEcho
    from kame_cli.audio_io.callbacks import CaptureCallback, PlaybackCallback
    from kame_cli.audio_io.ducking import BargeInDuck
    from kame_cli.audio_io.frames import frame_blocksize
    from kame_cli.audio_io.room import ManualClock, SimulatedDuplex

    clock = ManualClock()
    canceller = EchoCanceller(
        engine=engine, residual_suppression=residual_suppression, clock=clock, barge_in_duck_db=duck_db
    )
    playback = PlaybackCallback(DEVICE_RATE, clock=clock)
    playback.far_end = canceller.add_far_end
    if duck_db > 0:  # as `aec_wiring.build_microphone_echo` wires it
        playback.duck = BargeInDuck(duck_db, lambda: canceller.user_talking)
    raw: list[np.ndarray] = []
    clean: list[np.ndarray] = []
    read_back: list[np.ndarray] = []
    revisions: dict[int, np.ndarray] = {}
    capture: CaptureCallback

    def on_frame(frame: np.ndarray) -> None:
        raw.append(frame)
        clean.append(hook(frame))
        read_back.append(canceller.last_far)
        revision = hook.take_revision()
        if revision is not None:  # the STT gets it after this frame, as a session sends it
            revisions[len(clean) - 1] = revision

    capture = CaptureCallback(DEVICE_RATE, on_frame, clock=clock)
    hook = MicrophoneEcho(canceller, input_latency=lambda: (capture.latency_s, capture.device_latency_s))
    room = SimulatedDuplex(
        rate=DEVICE_RATE,
        block=frame_blocksize(DEVICE_RATE),
        rir=rir,
        out_latency_s=0.7 * setup.device_delay_s,
        in_latency_s=0.3 * setup.device_delay_s,  # run_seed's frame-time bookkeeping assumes this split
        near=near,
        seed=seed,
        clock=clock,
        speaker_limit=setup.speaker_limit,
        background_dbfs=None if setup.noise_snr_db is None else _USER_RMS_DBFS - setup.noise_snr_db,
    )
    far = scene.far if with_assistant else np.zeros_like(scene.far)
    frames = far.reshape(-1, 1920)
    delay_s = setup.device_delay_s
    extra = math.ceil((delay_s + 0.2) / FRAME_SECONDS)
    before, after = setup.hidden_delays_s
    jump_frame = round(setup.jump_at * frames.shape[0])
    for k in range(frames.shape[0] + extra):
        room.hidden_delay_s = before if k < jump_frame else after
        if k < frames.shape[0]:
            playback.enqueue(frames[k])
        room.tick(playback, capture)
    # Frame k of the microphone holds what was captured then: trim to the scene's length.
    count = frames.shape[0]
    return {
        "raw": raw[:count],
        "clean": clean[:count],
        "revisions": {k: r for k, r in revisions.items() if k < count},
        "shifts": canceller.shifts,
        "far": read_back[:count],
        "jump_frame": jump_frame if setup.jump_s else None,
        "stats": canceller.stats(),
        "ducked_s": 0.0 if playback.duck is None else playback.duck.ducked_s,
    }


def _assistant_only_frames(
    scene: _Scene, count: int, echo_delay_s: float, user: tuple[float, float]
) -> list[int]:
    """Microphone frames that hold the assistant's echo and not the user (the echo reaches the
    microphone's frames `echo_delay_s` after the assistant's; `user`: the user's voice there)."""
    u0, u1 = user
    keep = []
    for k in range(count):
        t0, t1 = k * FRAME_SECONDS, (k + 1) * FRAME_SECONDS
        speaking = any(a0 + echo_delay_s <= t0 and t1 <= a1 + echo_delay_s for a0, a1 in scene.assistant)
        if speaking and (t1 <= u0 or t0 >= u1):
            keep.append(k)
    return keep


def _erle(talk: dict[str, Any], alone: dict[str, Any], only: list[int]) -> tuple[float, list[float]]:
    """ERLE over the assistant-only frames (all of them, and per frame), noise excluded: the same
    simulation with the assistant silent has the same noise and user sample for sample, so the
    difference of the raw microphones is the echo, and the output's power beyond that run's is
    what is left of it (none where the mute holds)."""
    import numpy as np

    def power(x: np.ndarray) -> float:
        return float(np.dot(x, x))

    echo = [power(talk["raw"][k] - alone["raw"][k]) for k in only]
    left = [max(power(talk["clean"][k]) - power(alone["clean"][k]), 0.0) for k in only]
    floor = 1e-6  # 60 dB: a frame whose output is no louder than without the assistant
    total = 10 * math.log10(sum(echo) / max(sum(left), floor * sum(echo), 1e-20))
    per_frame = [
        10 * math.log10(max(e, 1e-20) / max(r, floor * e, 1e-20)) for e, r in zip(echo, left, strict=True)
    ]
    return total, per_frame


def _transcribe(
    model: SttModel, frames: list[np.ndarray], revisions: dict[int, np.ndarray] | None = None
) -> list[tuple[float, float, str]]:
    from kame_cli.backends.stt.config import SttConfig
    from kame_cli.bench.stt import feed
    from kame_cli.clock import SessionClock
    from kame_cli.events import FinalTranscript

    cfg = SttConfig(model="auto", device="cpu", cpu_threads=1)
    run = feed(frames, cfg, model, SessionClock(), paced=False, revisions=revisions)
    return [(e.audio_start, e.audio_end, e.text) for e in run.events if isinstance(e, FinalTranscript)]


def _split(finals: list[tuple[float, float, str]], user: tuple[float, float]) -> tuple[list[str], list[str]]:
    """(words of turns that overlap the user's speech, words of turns that do not: echo words)."""
    from kame_cli.backends.stt.text import normalize_words

    mine: list[str] = []
    echo: list[str] = []
    for start, end, text in finals:
        overlaps = start < user[1] and end > user[0]
        (mine if overlaps else echo).extend(normalize_words(text))
    return mine, echo


@dataclass(frozen=True, slots=True)
class RoomRun:
    """One room simulated twice (with and without the assistant) and its ERLE: what the STT then reads."""

    setup: RoomSetup
    scene: _Scene
    talk: dict[str, Any]
    alone: dict[str, Any]
    user: tuple[float, float]
    """The user's speech in the microphone's frame time (s)."""
    echo_to_user_db: float
    erle_db: float
    erle_frames_db: list[float]

    @property
    def user_kept_db(self) -> float:
        """In the frames of double talk: the user's voice (the run without the assistant) against what
        the canceller's output adds to it or takes from it (echo left, the user's voice lost)."""
        import numpy as np

        u0, u1 = self.user
        ks = [
            k
            for k in range(len(self.talk["clean"]))
            if u0 <= k * FRAME_SECONDS and (k + 1) * FRAME_SECONDS <= u1
        ]
        voice = sum(float(np.dot(self.alone["clean"][k], self.alone["clean"][k])) for k in ks)
        diff = sum(float(np.sum((self.talk["clean"][k] - self.alone["clean"][k]) ** 2)) for k in ks)
        return 10 * math.log10(max(voice, 1e-20) / max(diff, 1e-20))

    def ideal_frames(self, span_ms: int) -> list[np.ndarray]:
        """The microphone as the ideal `span_ms` filter leaves it (`echo_ideal.py`): the run without the
        assistant plus what that filter cannot take out of the echo."""
        import numpy as np

        from kame_cli.bench.echo_ideal import ideal_residual

        alone = np.concatenate(self.alone["raw"]).astype(np.float64)
        echo = np.concatenate(self.talk["raw"]).astype(np.float64) - alone
        jump = self.talk["jump_frame"]
        residual = ideal_residual(
            np.concatenate(self.talk["far"]),
            echo,
            span_ms * SAMPLE_RATE // 1000,
            speaker_limit=self.setup.speaker_limit,
            split=None if jump is None else jump * FRAME_SAMPLES,
        )
        return list((alone + residual).astype(np.float32).reshape(-1, FRAME_SAMPLES))


def simulate_room(
    seed: int,
    users: list[tuple[str, str, np.ndarray]],
    assistant_voice: str,
    engine: str,
    rooms: str,
    residual_suppression: bool = False,
    duck_db: float = 0.0,
) -> RoomRun:
    """The room of `seed`, its scene, and both simulations through the canceller."""
    import numpy as np
    from scipy.signal import fftconvolve

    from kame_cli.audio_io.resampling import resampled
    from kame_cli.audio_io.room import ROOM_SETS, SPEED_OF_SOUND, shoebox_rirs

    rng = np.random.default_rng(seed)
    setup = ROOM_SETS[rooms](rng)
    speaker_rir, user_rir = shoebox_rirs(setup, DEVICE_RATE, rng)
    scene = _scene(rng, users, assistant_voice)
    # The microphone's gain puts the user's voice (through the room) at _USER_RMS_DBFS; the speaker
    # plays the assistant's voice `level_db` louder than the user speaks, through the same gain.
    near = fftconvolve(resampled(scene.near, 24_000, DEVICE_RATE), user_rir)
    mic_gain = 10 ** (_USER_RMS_DBFS / 20) / max(_active_rms(near), 1e-12)
    near *= mic_gain
    rir = speaker_rir * mic_gain * 10 ** (setup.level_db / 20)

    talk = _simulate(scene, rir, near, setup, True, seed, engine, residual_suppression, duck_db)
    # Without the assistant there is nothing to duck: the detector would only cost time (the output is
    # the same with it or without).
    alone = _simulate(scene, rir, near, setup, False, seed, engine, residual_suppression)
    # Where things land in the microphone's frames (frame k holds frame time k x 80 ms on): the
    # first block delivered was captured one block plus the input latency before the clock started.
    in_latency = 0.3 * setup.device_delay_s
    user = (scene.user[0] + FRAME_SECONDS + in_latency, scene.user[1] + FRAME_SECONDS + in_latency)
    echo_delay = (
        setup.device_delay_s + max(setup.hidden_delays_s) + FRAME_SECONDS + setup.distance_m / SPEED_OF_SOUND
    )
    only = _assistant_only_frames(scene, len(talk["raw"]), echo_delay, user)
    echo_at_mic = fftconvolve(resampled(scene.far, 24_000, DEVICE_RATE), rir)
    echo_to_user_db = 20 * math.log10(max(_active_rms(echo_at_mic), 1e-12) / 10 ** (_USER_RMS_DBFS / 20))
    erle, per_frame = _erle(talk, alone, only)
    return RoomRun(setup, scene, talk, alone, user, echo_to_user_db, erle, per_frame)


def run_seed(
    seed: int,
    model: SttModel,
    users: list[tuple[str, str, np.ndarray]],
    assistant_voice: str,
    engine: str,
    rooms: str = "classic",
    residual_suppression: bool = False,
    ideal: bool = False,
    duck_db: float = 0.0,
) -> SeedResult:
    from kame_cli.backends.stt.text import normalize_words, word_errors
    from kame_cli.bench.echo_ideal import IDEAL_SPANS_MS

    run = simulate_room(seed, users, assistant_voice, engine, rooms, residual_suppression, duck_db)
    setup, talk, alone, user = run.setup, run.talk, run.alone, run.user
    reference = normalize_words(run.scene.reference)
    heard_off, echo_off = _split(_transcribe(model, talk["raw"]), user)
    heard_on, echo_on = _split(_transcribe(model, talk["clean"], talk["revisions"]), user)
    heard_alone, _ = _split(_transcribe(model, alone["clean"]), user)
    ideal_errors = None
    if ideal:
        ideal_errors = {
            str(span): word_errors(reference, _split(_transcribe(model, run.ideal_frames(span)), user)[0])
            for span in IDEAL_SPANS_MS
        }
    stats = talk["stats"]
    delay_ms = stats.delay_ms if stats.delay_ms is not None else float("nan")
    return SeedResult(
        seed=seed,
        distance_m=round(setup.distance_m, 2),
        rt60_s=round(setup.rt60_s, 2),
        device_delay_ms=round(1000 * setup.device_delay_s, 1),
        level_db=round(setup.level_db, 1),
        user_distance_m=round(setup.user_distance_m, 2),
        speaker_limit=None if setup.speaker_limit is None else round(setup.speaker_limit, 3),
        noise_snr_db=None if setup.noise_snr_db is None else round(setup.noise_snr_db, 1),
        jump_ms=round(1000 * setup.jump_s, 1),
        echo_to_user_db=round(run.echo_to_user_db, 1),
        user_clip=run.scene.clip,
        erle_db=round(run.erle_db, 1),
        erle_frame_median_db=round(statistics.median(run.erle_frames_db), 1),
        user_kept_db=round(run.user_kept_db, 1),
        echo_words_aec_off=len(echo_off),
        echo_words_aec_on=len(echo_on),
        echo_text_aec_off=" ".join(echo_off),
        echo_text_aec_on=" ".join(echo_on),
        doubletalk_errors=word_errors(reference, heard_on),
        doubletalk_errors_aec_off=word_errors(reference, heard_off),
        clean_errors=word_errors(reference, heard_alone),
        reference_words=len(reference),
        doubletalk_text=" ".join(heard_on),
        clean_text=" ".join(heard_alone),
        delay_estimate_ms=round(delay_ms, 1),
        delay_error_ms=round(abs(delay_ms - 1000 * setup.device_delay_s), 1),
        cpu_ms_per_frame=round(stats.cpu_ms_per_frame, 2),
        cpu_ms_max=round(stats.cpu_ms_max, 2),
        ideal_doubletalk_errors=ideal_errors,
        ducked_s=round(talk["ducked_s"], 2),
    )


def bench_erle(
    seed_range: range,
    users: list[tuple[str, str, np.ndarray]],
    voice: str,
    engine: str,
    rooms: str,
    as_json: bool,
    residual_suppression: bool = False,
    duck_db: float = 0.0,
) -> None:
    """`--no-stt`: the rooms' ERLE and how much of the user's voice double talk keeps, without the STT
    (a fast loop for tuning)."""
    first_seed = seed_range.start
    _log(
        f"echo bench (ERLE only, no STT): {len(seed_range)} {rooms} rooms "
        f"(seeds {first_seed}..{seed_range[-1]})"
    )
    rows: list[dict[str, Any]] = []
    erles: list[float] = []
    kept: list[float] = []
    for seed in seed_range:
        run = simulate_room(seed, users, voice, engine, rooms, residual_suppression, duck_db)
        erles.append(run.erle_db)
        kept.append(run.user_kept_db)
        stats = run.talk["stats"]
        row = {
            "seed": seed,
            "rt60_s": round(run.setup.rt60_s, 2),
            "speaker_limit": None if run.setup.speaker_limit is None else round(run.setup.speaker_limit, 3),
            "echo_to_user_db": round(run.echo_to_user_db, 1),
            "erle_db": round(run.erle_db, 1),
            "erle_frame_median_db": round(statistics.median(run.erle_frames_db), 1),
            "user_kept_db": round(run.user_kept_db, 1),
            "cpu_ms_per_frame": round(stats.cpu_ms_per_frame, 2),
        }
        rows.append(row)
        _log(f"  seed {seed}: RT60 {row['rt60_s']} s, speaker limit {row['speaker_limit']}, echo "
             f"{row['echo_to_user_db']:+.1f} dB against the user: ERLE {row['erle_db']:.1f} dB (frame median "
             f"{row['erle_frame_median_db']:.1f}), user kept in double talk {row['user_kept_db']:.1f} dB, "
             f"AEC {row['cpu_ms_per_frame']:.2f} ms/frame")  # fmt: skip
    erle, kept_median = statistics.median(erles), statistics.median(kept)
    _log(f"ERLE median {erle:.1f} dB, min {min(erles):.1f} dB; user kept in double talk: median "
         f"{kept_median:.1f} dB, min {min(kept):.1f} dB")  # fmt: skip
    if as_json:
        summary = {
            **_summary_head(engine, residual_suppression, duck_db, rooms, first_seed, erle),
            "erle_db_min": round(min(erles), 1),
            "user_kept_db": round(kept_median, 1),
            "seeds": rows,
        }
        print(json.dumps(summary))


def bench(
    seeds: int,
    first_seed: int,
    audio_dir: Path | None,
    voice: str,
    user_voice: str,
    as_json: bool,
    engine: str,
    rooms: str = "classic",
    residual_suppression: bool = False,
    ideal: bool = False,
    duck_db: float = 0.0,
    jobs: int = 1,
) -> None:
    from kame_cli.bench.echo_jobs import RoomJob, load_inputs, room_results

    job = RoomJob(audio_dir, user_voice, voice, engine, rooms, residual_suppression, ideal, duck_db)
    model, users = load_inputs(job)
    source = str(audio_dir) if audio_dir is not None else f"espeak-ng {user_voice}"
    _log(f"echo bench: {seeds} simulated {rooms} rooms (seeds {first_seed}..{first_seed + seeds - 1}), "
         f"card at "
         f"{DEVICE_RATE} Hz; assistant espeak-ng {voice}; user {source}; STT {model.describe()}"
         f"{f'; {jobs} processes' if jobs > 1 else ''}")  # fmt: skip
    results = []
    for r in room_results(job, range(first_seed, first_seed + seeds), jobs, (model, users)):
        results.append(r)
        _log(
            f"  seed {r.seed}: speaker {r.distance_m} m, user {r.user_distance_m} m, RT60 {r.rt60_s} s, "
            f"delay {r.device_delay_ms:.0f} ms{_wide_text(r)}, level {r.level_db:+.1f} dB "
            f"(echo {r.echo_to_user_db:+.1f} dB "
            f"against the user at the mic), user {r.user_clip}: ERLE {r.erle_db:.1f} dB (frame median "
            f"{r.erle_frame_median_db:.1f}), echo words "
            f"off {r.echo_words_aec_off} / on {r.echo_words_aec_on}, double-talk errors {r.doubletalk_errors}"
            f"/{r.reference_words} (clean {r.clean_errors}, AEC off {r.doubletalk_errors_aec_off}), "
            f"delay est. {r.delay_estimate_ms:.0f} ms, AEC {r.cpu_ms_per_frame:.2f} ms/frame"
            f"{f', ducked {r.ducked_s:.1f} s' if r.ducked_s else ''}"
        )
        if r.echo_words_aec_on:
            _log(f"    echo heard with AEC on: {r.echo_text_aec_on!r}")
        if r.ideal_doubletalk_errors is not None:
            spans = ", ".join(f"{span} ms {n}" for span, n in r.ideal_doubletalk_errors.items())
            _log(f"    double-talk errors under the ideal filter: {spans}")
    words = sum(r.reference_words for r in results)
    erle = statistics.median(r.erle_db for r in results)
    dt_wer = sum(r.doubletalk_errors for r in results) / max(words, 1)
    dt_wer_off = sum(r.doubletalk_errors_aec_off for r in results) / max(words, 1)
    clean_wer = sum(r.clean_errors for r in results) / max(words, 1)
    cpu = statistics.fmean(r.cpu_ms_per_frame for r in results)
    clean_errors = sum(r.clean_errors for r in results)
    ratio = sum(r.doubletalk_errors for r in results) / clean_errors if clean_errors else None
    spread = ratio_interval([(r.doubletalk_errors, r.clean_errors) for r in results])
    summary = {
        **_summary_head(engine, residual_suppression, duck_db, rooms, first_seed, erle),
        "erle_db_min": min(r.erle_db for r in results),
        "erle_frame_median_db": round(statistics.median(r.erle_frame_median_db for r in results), 1),
        "echo_words_aec_off": sum(r.echo_words_aec_off for r in results),
        "echo_words_aec_on": sum(r.echo_words_aec_on for r in results),
        "doubletalk_wer": round(dt_wer, 4),
        "doubletalk_wer_aec_off": round(dt_wer_off, 4),
        "clean_wer": round(clean_wer, 4),
        "doubletalk_ratio": None if ratio is None else round(ratio, 3),
        "doubletalk_ratio_ci90": None if spread is None else [round(end, 3) for end in spread],
        "delay_error_ms": max(r.delay_error_ms for r in results),
        "aec_cpu_ms_per_frame": round(cpu, 2),
        "aec_cpu_ms_max": max(r.cpu_ms_max for r in results),
        "seeds": [asdict(r) for r in results],
    }
    if ideal:
        summary["ideal_doubletalk_wer"] = _ideal_wer(results, words)
    ratio_ok = dt_wer <= TARGET_WER_RATIO * clean_wer or dt_wer == 0
    _log(f"ERLE (assistant alone): median {erle:.1f} dB, min {summary['erle_db_min']:.1f} dB  target >= "
         f"{TARGET_ERLE_DB:.0f} dB: {_mark(erle >= TARGET_ERLE_DB)}; median frame "
         f"{summary['erle_frame_median_db']:.1f} dB")  # fmt: skip
    _log(f"echo words (assistant alone): AEC off {summary['echo_words_aec_off']}, AEC on "
         f"{summary['echo_words_aec_on']}  target 0: {_mark(summary['echo_words_aec_on'] == 0)}")  # fmt: skip
    _log(f"user WER: double talk {dt_wer:.1%} (AEC off {dt_wer_off:.1%}), alone {clean_wer:.1%} over {words} "
         f"words  target <= {TARGET_WER_RATIO} x alone: {_mark(ratio_ok)}")  # fmt: skip
    if ratio is not None and spread is not None:
        _log(f"  double talk / alone: {ratio:.2f} x; a fresh set of {len(results)} such rooms would give "
             f"{spread[0]:.2f}-{spread[1]:.2f} x (90 %, the rooms drawn again)")  # fmt: skip
    if ideal:
        bound = ", ".join(f"{span} ms {wer:.1%}" for span, wer in summary["ideal_doubletalk_wer"].items())
        _log(f"user WER in double talk under the ideal filter (the true echo fitted, the speaker's curve "
             f"given, no mute): {bound}, alone {clean_wer:.1%}")  # fmt: skip
    _log(
        f"delay estimate error: max {summary['delay_error_ms']:.1f} ms (the simulated card reports its "
        "latencies truthfully: this checks the bookkeeping, not a real card's timestamps)"
    )
    _log(f"AEC cost: {cpu:.2f} ms CPU per 80 ms frame (max {summary['aec_cpu_ms_max']:.2f})  target <= "
         f"{TARGET_CPU_MS:.0f} ms: {_mark(cpu <= TARGET_CPU_MS)}")  # fmt: skip
    if as_json:
        print(json.dumps(summary))


def _ideal_wer(results: list[SeedResult], words: int) -> dict[str, float]:
    """The pooled double-talk WER under the ideal filter of each span."""
    totals: dict[str, int] = {}
    for r in results:
        for span, errors in (r.ideal_doubletalk_errors or {}).items():
            totals[span] = totals.get(span, 0) + errors
    return {span: round(errors / max(words, 1), 4) for span, errors in totals.items()}


def _summary_head(
    engine: str, residual_suppression: bool, duck_db: float, rooms: str, first_seed: int, erle: float
) -> dict[str, Any]:
    """What the JSON summary of either run starts with: the canceller, the rooms, the median ERLE."""
    return {
        "engine": engine,
        "residual_suppression": residual_suppression,
        "barge_in_duck_db": duck_db,
        "rooms": rooms,
        "first_seed": first_seed,
        "erle_db": round(erle, 1),
    }


def _wide_text(r: SeedResult) -> str:
    """What a wide room adds, for the per-room line."""
    parts = []
    if r.jump_ms:
        parts.append(f" (jump {r.jump_ms:+.0f} ms)")
    if r.speaker_limit is not None:
        parts.append(f", speaker limit {r.speaker_limit:.2f}")
    if r.noise_snr_db is not None:
        parts.append(f", noise {r.noise_snr_db:.0f} dB below the user")
    return "".join(parts)


def _mark(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def register(bench_app: typer.Typer) -> None:
    @bench_app.command("echo")
    def echo_command(
        seeds: Annotated[int, typer.Option(min=1, help="Simulated rooms to run.")] = 5,
        first_seed: Annotated[int, typer.Option("--seed", min=0, help="The first room's seed.")] = 0,
        audio_dir: Annotated[
            Path | None,
            typer.Option(
                "--audio-dir",
                help="The user's speech: clips with .txt transcripts (e.g. ../shared/audio/real).",
            ),
        ] = None,
        voice: Annotated[str, typer.Option(help="espeak-ng voice of the assistant.")] = "en-us+f3",
        user_voice: Annotated[
            str, typer.Option(help="espeak-ng voice of the user (without --audio-dir).")
        ] = "en-gb",
        engine: Annotated[
            str, typer.Option(help="The canceller: linear (kame's) or webrtc (AEC3): `[audio] aec_engine`.")
        ] = "linear",
        rooms: Annotated[
            str, typer.Option(help="Room set: classic (the first tuning set) or wide (docs/benchmarks.md).")
        ] = "classic",
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
        residual_suppression: Annotated[
            bool, typer.Option("--residual-suppression", help="With linear: `[audio] residual_suppression`.")
        ] = False,
        no_stt: Annotated[
            bool,
            typer.Option("--no-stt", help="ERLE and the user's voice kept only, without the STT (fast)."),
        ] = False,
        duck_db: Annotated[
            float | None,
            typer.Option(
                "--duck-db",
                min=0,
                max=40,
                help="`[audio] barge_in_duck_db`: the assistant turned down while the user talks (0: not).",
            ),
        ] = None,
        ideal: Annotated[
            bool,
            typer.Option(
                "--ideal",
                help="Also the user's WER in double talk under the ideal 400 and 800 ms filters (a bound).",
            ),
        ] = False,
        jobs: Annotated[
            int,
            typer.Option(
                min=1,
                max=64,
                help="Rooms run side by side in this many processes: one summary, each room's row as with 1.",
            ),
        ] = 1,
    ) -> None:
        """Echo cancellation in simulated rooms: ERLE, echo words, double-talk WER, delay, CPU."""
        from kame_cli.audio_io.config import AEC_ENGINES
        from kame_cli.audio_io.room import ROOM_SETS
        from kame_cli.errors import ConfigError

        if engine not in AEC_ENGINES:
            raise ConfigError(f"--engine {engine}: choose one of {', '.join(AEC_ENGINES)}")
        if rooms not in ROOM_SETS:
            raise ConfigError(f"--rooms {rooms}: choose one of {', '.join(ROOM_SETS)}")
        if no_stt and ideal:
            raise ConfigError("--ideal needs the STT: leave out --no-stt")
        if no_stt and jobs > 1:
            raise ConfigError("--jobs runs the STT's rooms side by side: leave it out with --no-stt")
        if duck_db is None:
            from kame_cli.audio_io.config import AudioConfig

            duck_db = AudioConfig().barge_in_duck_db
        if no_stt:
            users = _user_clips(audio_dir, user_voice)
            seed_range = range(first_seed, first_seed + seeds)
            bench_erle(seed_range, users, voice, engine, rooms, as_json, residual_suppression, duck_db)
        else:
            bench(
                seeds,
                first_seed,
                audio_dir,
                voice,
                user_voice,
                as_json,
                engine,
                rooms,
                residual_suppression,
                ideal,
                duck_db,
                jobs,
            )
