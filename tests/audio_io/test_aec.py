"""The echo canceller (WebRTC AEC3 via livekit) on the real stream callbacks, in a simulated room."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kame_cli.audio_io.aec import EchoCanceller, resolve_aec
from kame_cli.audio_io.aec_wiring import EchoSpec, aec_mode, build_microphone_echo
from kame_cli.audio_io.callbacks import CaptureCallback, PlaybackCallback
from kame_cli.audio_io.config import AudioConfig
from kame_cli.audio_io.files import FileSource
from kame_cli.audio_io.linear_aec import LinearEchoCanceller
from kame_cli.audio_io.room import ManualClock, RoomSetup, SimulatedDuplex, shoebox_rir, soft_clip
from kame_cli.clock import FRAME_SAMPLES, SAMPLE_RATE
from tests.support.speech import concat, synthesize

ASSISTANT = (
    "Good morning. I am the assistant, speaking through the loudspeaker on your desk. "
    "Today will be sunny with a light breeze, and tomorrow brings rain in the afternoon."
)


@pytest.fixture(scope="module")
def far_speech() -> np.ndarray:
    """About ten seconds of the assistant's voice (espeak-ng), at 24 kHz."""
    return concat([0.3, synthesize(ASSISTANT), 0.3]).astype(np.float32) * 0.5


@pytest.fixture(scope="module")
def rir() -> np.ndarray:
    """A shoebox room (RT60 0.4 s), speaker 1 m from the microphone, at 24 kHz."""
    setup = RoomSetup(distance_m=1.0, rt60_s=0.4, device_delay_s=0.1, level_db=0.0, dims_m=(5.0, 4.0, 2.8))
    return shoebox_rir(setup, SAMPLE_RATE, np.random.default_rng(7))


class _Rig:
    """The speaker's and the microphone's real callbacks around a canceller, in a simulated room."""

    def __init__(
        self,
        rir: np.ndarray,
        out_latency_s: float,
        in_latency_s: float,
        engine: str = "webrtc",
        near: np.ndarray | None = None,
    ) -> None:
        self.clock = ManualClock()
        self.canceller = EchoCanceller(engine=engine, clock=self.clock)
        self.playback = PlaybackCallback(SAMPLE_RATE, clock=self.clock, max_queued_frames=1000)
        self.playback.far_end = self.canceller.add_far_end
        self.raw: list[np.ndarray] = []
        self.clean: list[np.ndarray] = []
        self.capture = CaptureCallback(SAMPLE_RATE, self._on_frame, clock=self.clock)
        self.room = SimulatedDuplex(
            rate=SAMPLE_RATE,
            block=FRAME_SAMPLES,
            rir=rir,
            out_latency_s=out_latency_s,
            in_latency_s=in_latency_s,
            near=near,
            clock=self.clock,
        )

    def _on_frame(self, frame: np.ndarray) -> None:
        self.raw.append(frame)
        self.clean.append(
            self.canceller.process(frame, self.capture.latency_s, self.capture.device_latency_s)
        )

    def play(self, audio: np.ndarray, extra_blocks: int = 0) -> None:
        frames = audio[: len(audio) // FRAME_SAMPLES * FRAME_SAMPLES].reshape(-1, FRAME_SAMPLES)
        for frame in frames:
            self.playback.enqueue(frame)
        for _ in range(len(frames) + extra_blocks):
            self.room.tick(self.playback, self.capture)


def fftconvolve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """scipy's, imported on first use: scipy.signal costs every worker that collects this module ~1 s."""
    from scipy.signal import fftconvolve as convolve

    return convolve(a, b)


def _erle_db(raw: list[np.ndarray], clean: list[np.ndarray], first: int, last: int) -> float:
    r, c = np.concatenate(raw[first:last]), np.concatenate(clean[first:last])
    return float(10 * np.log10(np.mean(r**2) / np.mean(c**2)))


@pytest.mark.parametrize("engine", ["linear", "webrtc"])
def test_the_canceller_removes_a_delayed_room_filtered_copy_of_the_far_end(
    engine: str, far_speech: np.ndarray, rir: np.ndarray
) -> None:
    rig = _Rig(rir, out_latency_s=0.090, in_latency_s=0.030, engine=engine)
    rig.play(np.concatenate([far_speech, far_speech]), extra_blocks=5)

    n = len(rig.clean)
    # After the first two seconds (AEC3 converging; the linear filter converging under its mute),
    # the echo is down by at least 20 dB; and in the second ten seconds, with the mute long open.
    assert _erle_db(rig.raw, rig.clean, 25, n) >= 20.0
    assert _erle_db(rig.raw, rig.clean, n // 2, n) >= 20.0
    stats = rig.canceller.stats()
    assert stats.frames == n
    assert stats.erle_db is not None and stats.erle_db >= 20.0
    assert stats.delay_ms == pytest.approx(120.0, abs=1.0)  # output 90 ms + input 30 ms
    # Without the reference the same microphone signal keeps its echo: the removal is the canceller's.
    assert _erle_db(rig.raw, rig.raw, 25, n) == 0.0


def test_the_delay_estimate_follows_a_change_of_the_device_delay(
    far_speech: np.ndarray, rir: np.ndarray
) -> None:
    rig = _Rig(rir, out_latency_s=0.040, in_latency_s=0.020)
    half = len(far_speech) // 2
    rig.play(far_speech[:half])
    before = rig.canceller.stats().delay_ms
    changed_at = len(rig.clean)
    # The output's buffering grows by 110 ms mid-session (a device that re-negotiated its buffers).
    rig.room.out_latency_s = 0.150
    rig.play(far_speech[half:], extra_blocks=5)
    after = rig.canceller.stats().delay_ms

    assert before == pytest.approx(60.0, abs=1.0)
    assert after == pytest.approx(170.0, abs=1.0)
    # The far end is re-aligned from the timestamps at once: the echo stays cancelled after the change.
    assert _erle_db(rig.raw, rig.clean, changed_at + 5, len(rig.clean)) >= 20.0


USER = "Hold on, I asked about the price of the tickets, not the time."


def _user_at(audio: np.ndarray, start_s: float, total: int) -> np.ndarray:
    near = np.zeros(total)
    i = round(start_s * SAMPLE_RATE)
    near[i : i + len(audio)] = audio[: total - i]
    return near


@pytest.mark.parametrize("engine", ["linear", "webrtc"])
def test_the_linear_engine_keeps_the_users_voice_over_the_assistants_which_aec3_cuts(
    engine: str, far_speech: np.ndarray, rir: np.ndarray
) -> None:
    # The assistant speaks twice (about 20 s); the user talks over the second half, 6 dB below the echo.
    far = np.concatenate([far_speech, far_speech])
    user = synthesize(USER, voice="en-gb").astype(np.float32)
    echo_rms = float(np.sqrt(np.mean(fftconvolve(far_speech, rir)[: len(far_speech)] ** 2)))
    user *= 0.5 * echo_rms / float(np.sqrt(np.mean(user**2)))
    start_s = len(far_speech) / SAMPLE_RATE + 2.0
    near = _user_at(user, start_s, len(far) + 10 * FRAME_SAMPLES)
    rig = _Rig(rir, out_latency_s=0.090, in_latency_s=0.030, engine=engine, near=near)
    rig.play(far, extra_blocks=5)

    clean = np.concatenate(rig.clean)
    echo = np.concatenate(rig.room.echo_only)
    first, last = round(start_s * SAMPLE_RATE), round(start_s * SAMPLE_RATE) + len(user)
    voice = near[first:last]
    # The output runs a fixed few blocks behind the user's voice (capture latency, re-blocking, and
    # one more 20 ms block for the linear engine): the lag where the two line up best.
    lags = range(0, 4 * FRAME_SAMPLES, 10)
    lag = max(lags, key=lambda k: float(np.dot(clean[first + k : last + k], voice)))
    heard = clean[first + lag : last + lag]
    # How much of the user's voice comes out: the best gain fit of their voice into the output.
    kept = float(np.dot(heard, voice) / np.dot(voice, voice))
    if engine == "linear":
        assert kept >= 0.6, f"the user's voice passes the linear canceller nearly whole ({kept:.2f})"
        # ...and the echo alone, before the user speaks, is still removed by 12 dB or more.
        quiet = slice(round(4.0 * SAMPLE_RATE), first)
        out = clean[quiet.start + lag : quiet.stop + lag]
        removed = 10 * np.log10(np.mean(echo[quiet] ** 2) / np.mean(out**2))
        assert removed >= 12.0, removed
    else:
        assert kept < 0.5, f"AEC3 suppresses most of a user who talks over the assistant ({kept:.2f})"


def _cancel_blocks(canceller: LinearEchoCanceller, near: np.ndarray, far: np.ndarray) -> np.ndarray:
    """`near` and `far` through the linear canceller in 20 ms blocks; the output realigned with `near`."""
    block = canceller.block
    n = len(far) // block * block
    out = [canceller.process(near[i : i + block], far[i : i + block]) for i in range(0, n, block)]
    return np.concatenate(out)[block:]  # one block late


def _echo_of(far: np.ndarray, rir: np.ndarray, lead_s: float = 0.060) -> np.ndarray:
    """The echo of `far` through the room, `lead_s` behind it (the read-back's lead)."""
    lead = round(lead_s * SAMPLE_RATE)
    # By FFT: a direct convolution with a room's response of thousands of taps takes seconds.
    return fftconvolve(np.concatenate([np.zeros(lead), far]), rir)[: len(far)].astype(np.float32)


def _down_db(before: np.ndarray, after: np.ndarray, span: slice) -> float:
    return float(10 * np.log10(np.mean(before[span] ** 2) / np.mean(after[span] ** 2)))


def test_the_linear_filter_converges_within_the_assistants_first_seconds(
    far_speech: np.ndarray, rir: np.ndarray
) -> None:
    # The echo alone, 60 ms behind the far end (the read-back's lead), through the room.
    echo = _echo_of(far_speech, rir)
    n = len(far_speech) // 480 * 480

    # The filter alone (a 0 dB mute): the Kalman gain's large early steps take the echo down by
    # 18 dB or more (~22 dB) over seconds 7-10 of the assistant's voice (a normalized-LMS step: ~13 dB).
    out = _cancel_blocks(LinearEchoCanceller(suppression_floor_db=0.0), echo, far_speech)
    late = slice(7 * SAMPLE_RATE, n - 480)
    cancelled = 10 * np.log10(np.mean(echo[late] ** 2) / np.mean(out[late] ** 2))
    assert cancelled >= 18.0, cancelled
    # With the mute: silence while the filter converges, and the microphone opens within those 10 s.
    canceller = LinearEchoCanceller()
    muted = _cancel_blocks(canceller, echo, far_speech)
    early = slice(SAMPLE_RATE, 3 * SAMPLE_RATE)
    assert 10 * np.log10(np.mean(echo[early] ** 2) / np.mean(muted[early] ** 2)) >= 60.0
    assert canceller.adapted


@pytest.mark.parametrize("user_talks", [False, True])
def test_the_linear_cancellers_mute_holds_to_the_end_of_the_utterance_it_converged_in(
    user_talks: bool, far_speech: np.ndarray, rir: np.ndarray
) -> None:
    # 7 s of the assistant's voice, then a 1 s pause; the filter converges at ~6 s of it.
    block = 480
    far = np.concatenate([far_speech[: 7 * SAMPLE_RATE], np.zeros(SAMPLE_RATE, dtype=np.float32)])
    n = len(far) // block * block
    far = far[:n]
    echo = _echo_of(far, rir)
    near = echo.copy()
    user_s = 6.5
    if user_talks:  # ...and the user talks over its last half second, 6 dB below the echo
        user = synthesize(USER, voice="en-gb").astype(np.float32)
        user *= 0.5 * float(np.sqrt(np.mean(echo**2) / np.mean(user**2)))
        near += _user_at(user, user_s, n).astype(np.float32)
    canceller = LinearEchoCanceller()
    out, adapted = [], []
    for i in range(0, n, block):
        out.append(canceller.process(near[i : i + block], far[i : i + block]))
        adapted.append(canceller.adapted)
    clean = np.concatenate(out)[block:]  # one block late
    speaking = slice(round(6.2 * SAMPLE_RATE), 7 * SAMPLE_RATE)
    if not user_talks:
        # The residual of a filter that has only just converged stays muted (a recognizer reads it
        # as words on a silent background) to the end of the utterance; the pause opens the microphone.
        assert 10 * np.log10(np.mean(echo[speaking] ** 2) / np.mean(clean[speaking] ** 2)) >= 60.0
        assert not any(adapted[: 7 * SAMPLE_RATE // block])
        assert adapted[-1]
    else:
        # The user's voice is not echo: it opens the microphone at once, without waiting for the pause.
        opened = adapted.index(True) * block / SAMPLE_RATE
        assert user_s <= opened <= user_s + 0.3, opened
        voice = slice(round((opened + 0.05) * SAMPLE_RATE), 7 * SAMPLE_RATE)
        assert np.mean(clean[voice] ** 2) >= 0.5 * np.mean((near - echo)[voice] ** 2)


JUMP_AT, JUMP = 13 * SAMPLE_RATE, round(0.040 * SAMPLE_RATE)


@pytest.fixture(scope="module")
def jumped_room(far_speech: np.ndarray, rir: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(far end, its echo): 20 s of the assistant's voice; at 13 s the device re-buffers: the rest
    plays 40 ms later (40 ms of silence in the air), while the reference goes on as before."""
    far = np.concatenate([far_speech, far_speech])
    played = np.concatenate([far[:JUMP_AT], np.zeros(JUMP, dtype=np.float32), far[JUMP_AT:]])[: len(far)]
    return far, _echo_of(played, rir)


def test_the_linear_canceller_follows_a_jump_of_the_echo_delay_the_timestamps_did_not_report(
    jumped_room: tuple[np.ndarray, np.ndarray],
) -> None:
    far, echo = jumped_room
    canceller = LinearEchoCanceller()
    out = _cancel_blocks(canceller, echo, far)

    # The jump is found (within a sample) and the filter shifted: once the echo of what was played
    # before the jump has died out (RT60 0.4 s), the echo is down by 20 dB or more again (~30 dB), and
    # by 10 dB over the jump's first second (~14 dB). A filter left to re-learn the moved path on its
    # own added echo over those seconds (-2 dB and -4 dB).
    assert len(canceller.shifts) == 1 and abs(canceller.shifts[0] - JUMP) <= 1, canceller.shifts
    assert _down_db(echo, out, slice(JUMP_AT + SAMPLE_RATE // 2, JUMP_AT + 3 * SAMPLE_RATE)) >= 20.0
    assert _down_db(echo, out, slice(JUMP_AT, JUMP_AT + SAMPLE_RATE)) >= 10.0


def test_the_assistants_next_turn_after_a_pause_is_not_taken_for_a_jump_of_the_echo_delay() -> None:
    # Classic room 713 of `kame bench echo` (a held-out room: speaker 0.33 m from the microphone,
    # nothing moves). The jump search once compared a history spliced from the end of the assistant's
    # second turn and the start of its third, found a jump of 85 ms at that onset, and the shift cost
    # the filter its first taps: ~3 s of echo at 0-3 dB, ERLE 8.8 dB over the session.
    from kame_cli.bench.echo import _user_clips, simulate_room

    run = simulate_room(713, _user_clips(None, "en-gb"), "en-us+f3", "linear", "classic")
    assert run.erle_db >= 30.0, run.erle_db  # ~37 dB
    tenth = sorted(run.erle_frames_db)[len(run.erle_frames_db) // 10]
    assert tenth >= 20.0, tenth  # no stretch of the echo let through (~0-3 dB frames before)


def test_a_user_who_talks_over_a_filter_still_learning_is_heard() -> None:
    # Wide room 723 of `kame bench echo` (a held-out room: a speaker clipping at 0.16, RT60 0.78 s,
    # the echo 6 dB above the user). The filter stood at ~8 dB when the user talked over the
    # assistant's second turn, and the mute held through their words: the user's voice kept in
    # double talk 0.0 dB (every word lost).
    from kame_cli.bench.echo import _user_clips, simulate_room

    run = simulate_room(723, _user_clips(None, "en-gb"), "en-us+f3", "linear", "wide")
    assert run.user_kept_db >= 6.0, run.user_kept_db  # ~12 dB
    assert run.erle_db >= 18.0, run.erle_db  # the echo alone stays down as before (~22 dB)


def test_a_jump_of_the_echo_delay_while_the_user_talks_over_the_ducked_assistant_is_followed() -> None:
    # Wide room 1035 of `kame bench echo` (held out: RT60 0.82 s, the echo 9 dB above the user, ducked
    # 18 dB for them). The echo's delay moves -77 ms 2.7 s into the user's turn; the search waited
    # for the echo to dominate the microphone again, which it does only after their turn, and their
    # words from the jump on met the error of a filter off the path (kept 6.1 dB; with the real
    # speech of the bench, "might have been made still more respectable" was lost).
    from kame_cli.bench.echo import _user_clips, simulate_room

    run = simulate_room(1035, _user_clips(None, "en-gb"), "en-us+f3", "linear", "wide", duck_db=18.0)
    jump_s = run.setup.jump_at * len(run.talk["clean"]) * FRAME_SAMPLES / SAMPLE_RATE
    assert run.user[0] < jump_s < run.user[1] - 0.5, (run.user, jump_s)
    talk, alone = np.concatenate(run.talk["clean"]), np.concatenate(run.alone["clean"])
    after = slice(round(jump_s * SAMPLE_RATE), round(run.user[1] * SAMPLE_RATE))
    kept_db = _down_db(alone, talk - alone, after)  # the user's voice over what the output adds
    assert kept_db >= 9.0, kept_db  # ~10.2 dB
    assert run.talk["shifts"] == [-1838]  # the jump (-76.6 ms), once


def test_a_shift_the_jump_search_takes_back_at_once_restores_the_filter(
    far_speech: np.ndarray, rir: np.ndarray
) -> None:
    # Held-out classic room 810: the search found -85 ms mid-turn and +85 ms 0.28 s later. Shifting
    # earlier pushes the first taps (the direct path) out of the filter's span: shifted back, they
    # were zeros, and the echo came through until the filter learned them again (ERLE 11.0 dB over the
    # session; 21.9 with the filter restored).
    canceller = LinearEchoCanceller()
    far = far_speech[: 4 * SAMPLE_RATE]
    _cancel_blocks(canceller, _echo_of(far, rir), far)
    learned = canceller._W.copy()
    canceller._shift(-2037)
    assert not np.array_equal(canceller._W, learned)
    canceller._shift(2037)
    assert np.array_equal(canceller._W, learned)
    assert canceller.shifts == [-2037, 2037]


def test_a_jump_of_the_echo_delay_is_found_under_a_fans_rumble(
    jumped_room: tuple[np.ndarray, np.ndarray],
) -> None:
    from scipy.signal import lfilter

    # The same jump with a fan's rumble 10 dB under the echo: the room's noise estimate rises through
    # the assistant's long utterances to near the echo's level, and a finder that compared only
    # stretches 10 dB above it found the jump late (the echo ~5 dB down over the 2.5 s after it).
    far, echo = jumped_room
    rumble = lfilter([1.0], [1.0, -0.95], np.random.default_rng(2).normal(size=len(echo)))
    rumble *= 10 ** (-10 / 20) * float(np.sqrt(np.mean(echo**2) / np.mean(rumble**2)))
    # The filter alone: `out - rumble` is the echo left only while the rumble passes untouched, and
    # the residual-echo suppressor also lowers the noise in the bins it takes down.
    canceller = LinearEchoCanceller(double_talk_suppression=False)
    out = _cancel_blocks(canceller, (echo + rumble).astype(np.float32), far)
    left = out - rumble[: len(out)].astype(np.float32)  # what is left of the echo
    assert len(canceller.shifts) == 1 and abs(canceller.shifts[0] - JUMP) <= 1, canceller.shifts
    assert _down_db(echo, left, slice(JUMP_AT + SAMPLE_RATE // 2, JUMP_AT + 3 * SAMPLE_RATE)) >= 15.0


def test_a_noisy_room_does_not_hold_the_linear_cancellers_mute_over_the_user(
    far_speech: np.ndarray, rir: np.ndarray
) -> None:
    from scipy.signal import lfilter

    # A fan's rumble 12 dB under the echo: the filter can never take the microphone down by the 18 dB
    # that opens the mute, though it cancels the echo itself by more. The user talks over the
    # assistant from 6.5 s on, 6 dB below the echo.
    echo = _echo_of(far_speech, rir)
    echo_rms = float(np.sqrt(np.mean(echo**2)))
    white = np.random.default_rng(2).normal(size=len(echo))
    rumble = lfilter([1.0], [1.0, -0.95], white)
    rumble *= 10 ** (-12 / 20) * echo_rms / float(np.sqrt(np.mean(rumble**2)))
    user = synthesize(USER, voice="en-gb").astype(np.float32)
    user *= 0.5 * echo_rms / float(np.sqrt(np.mean(user**2)))
    user_s = 6.5
    voice = _user_at(user, user_s, len(echo))
    near = (echo + rumble + voice).astype(np.float32)
    out = _cancel_blocks(LinearEchoCanceller(), near, far_speech)

    # The user's words come through whole; the old bar, which counted the noise as echo left, held
    # the mute over them (70 dB down) until 10 s of the assistant's voice.
    span = slice(round((user_s + 0.3) * SAMPLE_RATE), round(9.5 * SAMPLE_RATE))
    assert np.mean(out[span] ** 2) >= 0.5 * np.mean(voice[span] ** 2)


def test_auto_runs_the_canceller_only_when_a_speaker_plays_while_a_microphone_listens(tmp_path: Path) -> None:
    assert resolve_aec("auto", speaker_and_microphone=True) is True
    assert resolve_aec("auto", speaker_and_microphone=False) is False  # file input or --no-speaker
    assert resolve_aec("auto", speaker_and_microphone=False, echo_reference=True) is True
    assert resolve_aec("on", speaker_and_microphone=False) is True
    assert resolve_aec("off", speaker_and_microphone=True) is False

    cfg = AudioConfig()
    assert aec_mode(cfg, EchoSpec()) == "auto"
    assert aec_mode(AudioConfig(aec="on"), EchoSpec()) == "on"
    assert aec_mode(AudioConfig(aec="on"), EchoSpec(headphones=True)) == "off"  # --headphones
    assert aec_mode(cfg, EchoSpec(aec="off")) == "off"

    wav = tmp_path / "in.wav"
    import soundfile as sf

    sf.write(wav, np.zeros(SAMPLE_RATE, dtype=np.float32), SAMPLE_RATE)
    clock = ManualClock()
    file_source = FileSource(wav, paced=False)
    # A file source with no speaker: auto leaves the microphone path alone; on builds the canceller.
    assert (
        build_microphone_echo(
            cfg, EchoSpec(aec="auto"), source=file_source, speaker=None, events=None, clock=clock
        )
        is None
    )
    hook = build_microphone_echo(
        cfg, EchoSpec(aec="on"), source=file_source, speaker=None, events=None, clock=clock
    )
    assert hook is not None


def test_aec_off_leaves_the_microphone_path_bit_exact(tmp_path: Path) -> None:
    import soundfile as sf

    from kame_cli.session.frontend_proc import InputPath

    rng = np.random.default_rng(3)
    wav = tmp_path / "in.wav"
    sf.write(wav, rng.uniform(-0.5, 0.5, 5 * FRAME_SAMPLES).astype(np.float32), SAMPLE_RATE, subtype="FLOAT")
    expected = list(FileSource(wav, paced=False).frames())

    def heard(mode: str) -> list[np.ndarray]:
        # The front-end process hands every input frame to `InputPath.process` and gives what it
        # returns to both the loop and the STT: that call is the whole microphone path.
        source = FileSource(wav, paced=False)
        hook = build_microphone_echo(
            AudioConfig(),
            EchoSpec(aec=mode),
            source=source,
            speaker=None,
            events=None,
            clock=ManualClock(),
        )
        path = InputPath(hook)
        return [np.array(path.process(frame), copy=True) for frame in source.frames()]

    frames = heard("off")
    assert len(frames) == len(expected)
    for got, want in zip(frames, expected, strict=True):
        np.testing.assert_array_equal(got, want)
    # The same path with the canceller on changes the samples (int16 round trip, high-pass):
    # the equality above is not a property of the test rig.
    assert not np.array_equal(np.concatenate(heard("on")), np.concatenate(expected))


DUPLEX = """
import json, threading
import numpy as np
from kame_cli.audio_io import MicrophoneSource, SpeakerSink
from kame_cli.audio_io.aec_wiring import EchoSpec, build_microphone_echo
from kame_cli.audio_io.config import AudioConfig
from kame_cli.bus import EventBus
from kame_cli.clock import SessionClock

bus, clock = EventBus(), SessionClock()
events = bus.subscribe("events")
speaker = SpeakerSink("kame_speaker", clock=clock, max_queued_frames=100)
mic = MicrophoneSource("kame_mic", clock=clock)
hook = build_microphone_echo(AudioConfig(), EchoSpec(aec="on"), source=mic, speaker=speaker,
                             events=bus, clock=clock)
tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(1920 * 60) / 24000)).astype(np.float32)
for step, frame in enumerate(tone.reshape(60, 1920)):
    speaker.write(step, frame)
out, enough = [], threading.Event()

def on_frame(frame):
    if len(out) < 40:
        out.append(hook(frame))
    else:
        enough.set()

speaker.start()
mic.start(on_frame)
got = enough.wait(30)
mic.stop()
speaker.close()
stats = hook.canceller.stats()
clean = np.stack(out)
print(json.dumps(dict(
    got=got, error=repr(mic.error), frames=stats.frames, far_fed_s=stats.far_fed_s, delay_ms=stats.delay_ms,
    shape=list(clean.shape), finite=bool(np.isfinite(clean).all()), cpu=stats.cpu_ms_per_frame,
    status=sum(type(e).__name__ == "AecStatus" for e in events.drain()),
)))
"""


def test_a_real_duplex_stream_on_the_virtual_card_runs_with_the_canceller(tmp_path: Path) -> None:
    from tests.audio_io.signals import sine
    from tests.audio_io.virtual_alsa import VirtualSoundCard

    card = VirtualSoundCard(tmp_path)
    card.add_microphone("kame_mic", 24000, sine(300, 24000, 8.0))
    card.add_speaker("kame_speaker", 48000)  # the reference arrives at 48 kHz and is resampled
    result = card.run(DUPLEX)

    assert result["got"] and result["error"] == "None"
    assert result["frames"] == 40 and result["shape"] == [40, FRAME_SAMPLES] and result["finite"]
    assert result["far_fed_s"] > 0  # the speaker's callback fed the reference while the mic ran
    assert result["status"] >= 3  # AecStatus about every 12 frames, for the panel
    assert result["delay_ms"] is None or result["delay_ms"] >= 0


def test_the_profile_audio_table_is_read_and_checked(tmp_path: Path) -> None:
    from kame_cli.errors import ProfileError
    from kame_cli.profiles.profile import load_profile

    good = tmp_path / "good.toml"
    llm = '[llm]\nprovider = "ollama_chat"\nmodel = "llama3.2"\n'
    good.write_text(
        llm + '[audio]\naec = "off"\nnoise_suppression = true\nresidual_suppression = true\n',
        encoding="utf-8",
    )
    audio = load_profile(str(good)).audio
    assert (audio.aec, audio.noise_suppression, audio.high_pass) == ("off", True, True)
    assert audio.residual_suppression and not AudioConfig().residual_suppression
    bad = tmp_path / "bad.toml"
    bad.write_text(llm + '[audio]\naec = "sometimes"\n', encoding="utf-8")
    with pytest.raises(ProfileError, match=r"\[audio\] aec: must be one of"):
        load_profile(str(bad))


def test_contradictory_echo_options_end_with_one_line_and_exit_2(tmp_path: Path) -> None:
    import soundfile as sf

    from kame_cli.errors import AudioFileError
    from tests.session.conftest import run_kame

    result = run_kame("talk", "--echo-reference", str(tmp_path / "out.wav"), "--no-ui", timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "kame: error: --echo-reference replays a recording: it needs --input FILE (the recorded microphone)"
    ]
    result = run_kame("talk", "--headphones", "--aec", "on", "--no-ui", timeout=60)
    assert result.returncode == 2 and "--headphones turns echo cancellation off" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1

    mono = tmp_path / "mono.wav"
    sf.write(mono, np.zeros(SAMPLE_RATE, dtype=np.float32), SAMPLE_RATE)
    with pytest.raises(AudioFileError, match="no channel 2: give a two-channel recording"):
        FileSource(mono, channel=1)


@pytest.fixture(scope="module")
def distorted_room(far_speech: np.ndarray, rir: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(far end, its echo): 14 s of the assistant's voice at a TTS-like level (-18 dBFS), played by a
    loudspeaker that soft-clips hard (limit 0.2: `--rooms wide`'s worst fifth) into the room."""
    far = np.concatenate([far_speech, far_speech[: 4 * SAMPLE_RATE]])
    far *= 10 ** (-18 / 20) / float(np.sqrt(np.mean(far**2)))
    return far, _echo_of(soft_clip(far, 0.2).astype(np.float32), rir)


def test_the_loudspeaker_model_cancels_the_echo_of_a_saturating_speaker_that_a_linear_filter_leaves(
    distorted_room: tuple[np.ndarray, np.ndarray],
) -> None:
    far, echo = distorted_room
    late = slice(11 * SAMPLE_RATE, len(far) // 480 * 480 - 480)
    # A linear filter cannot model the clipping: once its mute has opened (at 10 s: it never cancels
    # the 18 dB that opens it earlier), ~8 dB is all it removes.
    # (The filters alone: the residual-echo suppressor after them would blur what each one removes.)
    linear = _cancel_blocks(
        LinearEchoCanceller(loudspeaker_model=False, double_talk_suppression=False), echo, far
    )
    assert _down_db(echo, linear, late) < 12.0
    # With the saturation curve learned ahead of the filter: ~26 dB.
    canceller = LinearEchoCanceller(double_talk_suppression=False)
    modelled = _cancel_blocks(canceller, echo, far)
    assert _down_db(echo, modelled, late) >= _down_db(echo, linear, late) + 12.0
    # The curve it learned compresses the peaks: its slope falls from 1 to well under it.
    coefficients = canceller.nonlinear_coefficients
    assert coefficients is not None
    assert 1.0 + float(np.sum(coefficients)) < 0.5


def test_the_loudspeaker_model_stays_linear_on_a_linear_speaker(
    far_speech: np.ndarray, rir: np.ndarray
) -> None:
    # The distorting room's level, through a speaker that does not distort.
    far = far_speech * 10 ** (-18 / 20) / float(np.sqrt(np.mean(far_speech**2)))
    echo = _echo_of(far, rir)
    canceller = LinearEchoCanceller()
    out = _cancel_blocks(canceller, echo, far)
    coefficients = canceller.nonlinear_coefficients
    assert coefficients is not None and float(np.abs(coefficients).max()) <= 0.01, coefficients
    assert _down_db(echo, out, slice(7 * SAMPLE_RATE, len(far) // 480 * 480 - 480)) >= 20.0


def test_a_distorting_loudspeakers_echo_is_suppressed_where_the_filter_leaves_it(
    distorted_room: tuple[np.ndarray, np.ndarray],
) -> None:
    far, echo = distorted_room
    late = slice(11 * SAMPLE_RATE, len(far) // 480 * 480 - 480)
    filtered = _cancel_blocks(LinearEchoCanceller(double_talk_suppression=False), echo, far)
    # The residual-echo suppressor takes what the filter (~26 dB) leaves down by ~20 dB more.
    out = _cancel_blocks(LinearEchoCanceller(residual_suppression=True), echo, far)
    assert _down_db(echo, out, late) >= _down_db(echo, filtered, late) + 10.0


def test_the_default_suppressor_takes_the_echo_down_and_spares_a_user_who_talks_over_it(
    distorted_room: tuple[np.ndarray, np.ndarray],
) -> None:
    # After the mute (open from 10 s: the clipping keeps the filter under 18 dB), the double-talk-aware
    # suppressor takes the echo alone down as the plain one would, but where the user talks (half the
    # echo's level, from 11 s) it takes the residual off once and no deeper than -6 dB: the plain
    # suppressor's five-fold estimate took ~40 % of the user's voice with the echo.
    far, echo = distorted_room
    end = len(far) // 480 * 480 - 480
    alone = _cancel_blocks(LinearEchoCanceller(double_talk_suppression=False), echo, far)
    default = _cancel_blocks(LinearEchoCanceller(), echo, far)
    late = slice(11 * SAMPLE_RATE, end)
    assert _down_db(echo, default, late) >= _down_db(echo, alone, late) + 6.0  # ~35 dB against ~26

    user = synthesize(USER, voice="en-gb").astype(np.float32)
    user *= 0.5 * float(np.sqrt(np.mean(echo**2) / np.mean(user**2)))
    user_s = 11.0
    voice = _user_at(user, user_s, len(far)).astype(np.float32)
    span = slice(round(user_s * SAMPLE_RATE), min(round(user_s * SAMPLE_RATE) + len(user), end))

    def heard(canceller: LinearEchoCanceller) -> tuple[float, float]:
        """(the best gain fit of the user's voice into the output, their voice against the rest in dB)."""
        out = _cancel_blocks(canceller, echo + voice, far)[span]
        v = voice[span]
        return float(np.dot(out, v) / np.dot(v, v)), float(
            10 * np.log10(np.sum(v**2) / np.sum((out - v) ** 2))
        )

    kept, clean_db = heard(LinearEchoCanceller())
    plain_kept, _ = heard(LinearEchoCanceller(residual_suppression=True))
    _, alone_db = heard(LinearEchoCanceller(double_talk_suppression=False))
    assert kept >= 0.9 > 0.7 > plain_kept, (kept, plain_kept)  # ~0.96 and ~0.59
    # What it takes of the user costs no more than the residual it removes around them.
    assert clean_db >= alone_db - 1.0, (clean_db, alone_db)  # ~17.4 and ~16.9 dB


def test_the_user_passes_over_a_distorting_loudspeaker_from_the_assistants_first_seconds(
    distorted_room: tuple[np.ndarray, np.ndarray],
) -> None:
    # The user talks over the assistant at 4 s, at the echo's level. The filter never reaches the 18 dB
    # that opens the mute (the clipping stays in the error): the mute alone holds the user 70 dB down
    # through the assistant's first 10 s of voice. With `residual_suppression` it lasts 2 s, and the
    # suppressor passes the bins the user's voice dominates.
    far, echo = distorted_room
    user = synthesize(USER, voice="en-gb").astype(np.float32)
    user *= float(np.sqrt(np.mean(echo**2) / np.mean(user**2)))
    user_s = 4.0
    voice = _user_at(user, user_s, len(far)).astype(np.float32)
    span = slice(round(user_s * SAMPLE_RATE), round(user_s * SAMPLE_RATE) + len(user))

    def kept(canceller: LinearEchoCanceller) -> float:
        """The best gain fit of the user's voice into the output."""
        out = _cancel_blocks(canceller, echo + voice, far)
        return float(np.dot(out[span], voice[span]) / np.dot(voice[span], voice[span]))

    assert kept(LinearEchoCanceller(double_talk_suppression=False)) < 0.1
    assert kept(LinearEchoCanceller(residual_suppression=True)) >= 0.5


def test_a_distorting_speakers_model_opens_the_mute_for_the_user_at_the_assistants_next_turn(
    far_speech: np.ndarray, rir: np.ndarray
) -> None:
    # The assistant's first turn (6 s) through a loudspeaker that clips (limit 0.3), 1 s of silence,
    # then its second turn, which the user talks over from 0.5 s on, at the echo's level.
    level = 10 ** (-18 / 20) / float(np.sqrt(np.mean(far_speech**2)))
    first, second = far_speech[: 6 * SAMPLE_RATE] * level, far_speech[6 * SAMPLE_RATE :] * level
    far = np.concatenate([first, np.zeros(SAMPLE_RATE, dtype=np.float32), second])
    echo = _echo_of(soft_clip(far, 0.3).astype(np.float32), rir)
    user = synthesize(USER, voice="en-gb").astype(np.float32)
    user *= float(np.sqrt(np.mean(echo**2) / np.mean(user**2)))
    user_s = 7.5
    voice = _user_at(user, user_s, len(far)).astype(np.float32)
    span = slice(round(user_s * SAMPLE_RATE), len(far) // 480 * 480 - 480)

    def kept(canceller: LinearEchoCanceller) -> float:
        """The best gain fit of the user's voice into the output."""
        out = _cancel_blocks(canceller, echo + voice, far)
        return float(np.dot(out[span], voice[span]) / np.dot(voice[span], voice[span]))

    def trusted_at_the_second_turn(canceller: LinearEchoCanceller) -> bool:
        start = round(user_s * SAMPLE_RATE) // 480 * 480
        _cancel_blocks(canceller, echo[:start], far[:start])
        return canceller.adapted

    # A linear filter cancels ~11 dB by the end of the first turn: its mute stays on. With the
    # clipping modelled it cancels ~14 dB, enough to open at the end of the turn, and the user's words
    # pass.
    assert not trusted_at_the_second_turn(LinearEchoCanceller(loudspeaker_model=False))
    assert trusted_at_the_second_turn(LinearEchoCanceller())
    assert kept(LinearEchoCanceller()) >= 0.5
    # Over the filter that has not converged the mute opens for the user while the suppressor's
    # double-talk detector hears them (the mute alone held them 70 dB down until 10 s of the voice).
    assert kept(LinearEchoCanceller(loudspeaker_model=False)) >= 0.4
    assert kept(LinearEchoCanceller(loudspeaker_model=False, double_talk_suppression=False)) < 0.1
