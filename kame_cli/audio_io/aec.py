"""Echo cancellation on the microphone path: WebRTC's AEC3 (livekit's `AudioProcessingModule`), or
kame's linear canceller (`linear_aec.py`), as `[audio] aec_engine` says.

The far end (the assistant's voice exactly as the speaker's callback handed it to the device, at the
device's rate, silence and underruns included) and the near end (the microphone's 24 kHz frames) are
put on one time line by the streams' timestamps: each far-end block carries the time its first
sample reaches the DAC, each microphone frame the time its last sample left the ADC. For each
microphone frame the canceller reads back the far end played over the same 80 ms, shifted at most
`residual_ms` earlier (a margin for timestamp error: AEC3 needs the echo after its reference), and
feeds AEC3 the two 10 ms chunk by chunk, one far chunk before each near chunk. AEC3's own delay
estimator then only has to find a short, steady residual (the acoustic path and the timestamps'
error) whatever the devices' latency is; a latency change moves the read-back at once, with no
restart and no re-convergence.

Threads: `add_far_end` (called on the speaker's callback thread) only copies into a deque; the
resampling, AEC3 and the statistics all run in `process`, on the microphone's thread, before the
frame reaches the front-end and the STT. livekit is imported when a canceller is built.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from kame_cli.audio_io.barge_in import BargeInDetector
from kame_cli.audio_io.frames import as_frame
from kame_cli.audio_io.linear_aec import LinearEchoCanceller
from kame_cli.audio_io.resampling import StreamResampler
from kame_cli.bus import EventSink
from kame_cli.clock import FRAME_SAMPLES, FRAME_SECONDS, SAMPLE_RATE, SessionClock
from kame_cli.events import AecStatus

_LINEAR_BLOCK = SAMPLE_RATE // 50
"""The linear canceller's block: 20 ms (480 samples), four to a frame; half the numpy calls of
10 ms blocks for the same echo path."""
_LINEAR_PARTITIONS = 20
"""400 ms of echo path: the read-back's lead (up to `residual_ms`), the acoustic path, and a room's
reverberation down to about -30 dB (RT60 up to ~0.6 s)."""
CHUNK_SAMPLES = SAMPLE_RATE // 100
"""AEC3 takes 10 ms chunks: 240 samples at 24 kHz, eight to a frame."""
_CHUNK_S = CHUNK_SAMPLES / SAMPLE_RATE
_CHUNKS_PER_FRAME = FRAME_SAMPLES // CHUNK_SAMPLES
_FAR_ACTIVE = 10 ** (-50 / 10)
"""Mean square (-50 dBFS) above which a frame's far end counts as the assistant speaking (for ERLE)."""
_ERLE_ALPHA = 0.05  # per far-active frame: ERLE averages over the last ~1.6 s of the assistant's voice
_MAX_FAR_S = 2.0  # far-end audio kept beyond this is stale (no microphone read it): dropped
_MAX_LATENCY_S = 2.0  # a stream timestamp claiming more than this is not believed
_DELAY_WINDOW = 25  # latency readings (one per block) the delay estimate is the median of
_AVAILABLE_MARGIN_S = 0.005  # the read-back stays this far inside what the speaker has handed over
_SLIP_S = 0.005  # a timestamp this far from where the previous block ended is a latency change
_REVISE_BEFORE_S = 0.2
"""A revision of the STT's audio starts this long before the first window the barge-in VAD heard the
user in: their first syllable comes before it (the suppressor's full depth hid it from the VAD)."""
_REVISE_MAX_S = 1.0
"""...and reaches back this far at most."""
_REVISE_LEAD_S = 0.25
"""The gentle view is kept this much longer: it is cleaned up (WebRTC's high-pass) only when a
revision is cut from it, by a fresh module whose filter settles over this lead."""
_GENTLE_FRAMES = math.ceil((_REVISE_MAX_S + _REVISE_LEAD_S) / FRAME_SECONDS)
"""Frames of the gentle view kept (a ring): 1.28 s."""


@dataclass(frozen=True, slots=True)
class AecStats:
    """What the canceller measured so far."""

    frames: int
    erle_db: float | None
    """Echo return loss enhancement while the assistant speaks (microphone power / output power), dB."""
    delay_ms: float | None
    """The devices' echo delay from the stream timestamps: output latency + input latency."""
    residual_ms: float | None
    """How far the far end fed to AEC3 leads the near end (what `set_stream_delay_ms` is told)."""
    cpu_ms_per_frame: float
    """Mean thread CPU time of `process` per 80 ms frame (AEC3 and the bookkeeping)."""
    cpu_ms_max: float
    far_fed_s: float
    """Far-end audio fed to AEC3 so far (seconds at 24 kHz)."""


def output_latency_s(time_info: Any) -> float | None:
    """Seconds until the first sample of an output callback's block reaches the DAC; None if unknown."""
    dac = getattr(time_info, "outputBufferDacTime", 0.0)
    now = getattr(time_info, "currentTime", 0.0)
    return _believable(dac - now) if dac and now else None


def input_latency_s(time_info: Any, frames: int, rate: int) -> float | None:
    """Seconds since the last sample of an input callback's block left the ADC; None if unknown."""
    adc = getattr(time_info, "inputBufferAdcTime", 0.0)
    now = getattr(time_info, "currentTime", 0.0)
    return _believable(now - (adc + frames / rate)) if adc and now else None


def _believable(latency: float) -> float | None:
    # Some host APIs report zeros or garbage (PortAudio documents both): then the caller falls back.
    return max(0.0, latency) if -0.05 < latency < _MAX_LATENCY_S else None


def resolve_aec(mode: str, *, speaker_and_microphone: bool, echo_reference: bool = False) -> bool:
    """Whether the canceller runs: `on`/`off` as said; `auto` when the assistant plays through a
    speaker while a microphone listens, or when a recorded far end is replayed."""
    if mode == "on":
        return True
    if mode == "off":
        return False
    if mode != "auto":
        raise ValueError(f"aec mode must be auto, on or off, not {mode!r}")
    return speaker_and_microphone or echo_reference


class EchoCanceller:
    """WebRTC AEC3 (plus optional noise suppression and high-pass) on 24 kHz microphone frames.

    Live: `add_far_end(block, rate, latency_s)` from the speaker's callback, `process(frame,
    latency_s)` from the microphone's. Replay of a recording: `process_pair(near, far)`.
    """

    def __init__(
        self,
        *,
        engine: str = "linear",
        residual_suppression: bool = False,
        noise_suppression: bool = False,
        high_pass: bool = True,
        residual_ms: float = 60.0,
        clock: SessionClock | None = None,
        events: EventSink | None = None,
        status_every_frames: int = 12,
        barge_in_duck_db: float = 0.0,
    ) -> None:
        self.engine = engine
        self._barge_in: BargeInDetector | None = None
        self._ungated = np.zeros(FRAME_SAMPLES, dtype=np.float32)
        """The linear canceller's last frame as its suppressor would give it without the detector's
        verdict: what the detector hears (`LinearEchoCanceller.ungated`)."""
        self._gentle: np.ndarray = np.zeros(FRAME_SAMPLES, dtype=np.float32)
        """The linear canceller's frame with the user taken as talking (`LinearEchoCanceller.gentle`):
        the ring's slot the frame now processed is written to."""
        self._gentle_history: np.ndarray | None = None
        """The last `_GENTLE_FRAMES` of that view, a ring of frames: what a revision is cut from."""
        self._gentle_slot = 0
        self._revision: np.ndarray | None = None
        self._duck_db = barge_in_duck_db
        if barge_in_duck_db > 0:
            self._barge_in = BargeInDetector()
        self._linear: LinearEchoCanceller | None = None
        if engine == "linear":
            self._linear = LinearEchoCanceller(
                block=_LINEAR_BLOCK, partitions=_LINEAR_PARTITIONS, residual_suppression=residual_suppression
            )
            # WebRTC only for the microphone's clean-up, if asked: its AEC3 stays off.
            echo_cancellation = False
        elif engine == "webrtc":
            echo_cancellation = True
        else:
            raise ValueError(f"unknown echo canceller engine {engine!r}")
        self._apm: Any = None
        if echo_cancellation or noise_suppression or high_pass:
            from livekit import rtc

            self._apm = rtc.AudioProcessingModule(
                echo_cancellation=echo_cancellation,
                noise_suppression=noise_suppression,
                high_pass_filter=high_pass,
            )
        self._apm_ungated: Any = None
        self._clean_up_options = {"noise_suppression": noise_suppression, "high_pass_filter": high_pass}
        if self._linear is not None and self._barge_in is not None:
            self._gentle_history = np.zeros(_GENTLE_FRAMES * FRAME_SAMPLES, dtype=np.float32)
            self._gentle = self._gentle_history[:FRAME_SAMPLES]
            if self._apm is not None:
                # The barge-in detector hears the ungated output cleaned up as the output is (the
                # high-pass takes the room's rumble off), by a module of its own: each keeps filter state.
                from livekit import rtc

                self._apm_ungated = rtc.AudioProcessingModule(
                    echo_cancellation=False, **self._clean_up_options
                )
        # One buffer each way, reused: AudioFrame keeps a bytearray without copying it.
        self._near_bytes = bytearray(CHUNK_SAMPLES * 2)
        self._far_bytes = bytearray(CHUNK_SAMPLES * 2)
        self._near_pcm = np.frombuffer(self._near_bytes, dtype=np.int16)
        self._far_pcm = np.frombuffer(self._far_bytes, dtype=np.int16)
        if self._apm is not None:
            from livekit import rtc

            self._near_frame = rtc.AudioFrame(self._near_bytes, SAMPLE_RATE, 1, CHUNK_SAMPLES)
            self._far_frame = rtc.AudioFrame(self._far_bytes, SAMPLE_RATE, 1, CHUNK_SAMPLES)
        self._residual_s = residual_ms / 1000.0
        self._clock = clock or SessionClock()
        self._events = events
        self._status_every = max(1, status_every_frames)
        # Filled on the speaker's thread, drained on the microphone's (deque append/popleft are atomic).
        self._inbox: deque[tuple[float, int, np.ndarray]] = deque()
        self._far = FarTimeline()
        self._out_latency: deque[float] = deque(maxlen=_DELAY_WINDOW)
        self._in_latency: deque[float] = deque(maxlen=_DELAY_WINDOW)
        self._lock = threading.Lock()  # guards the latency windows, read by `stats` from any thread
        self._frames = 0
        self._cpu_total = 0.0
        self._cpu_max = 0.0
        self._near_power: float | None = None
        self._out_power: float | None = None
        self._residual_last: float | None = None
        self._far_fed = 0
        self.last_far: np.ndarray = np.zeros(FRAME_SAMPLES, dtype=np.float32)
        """The far end read back for the last microphone frame: what its echo was cancelled against
        (`kame bench echo --ideal` fits the ideal filter on exactly this)."""

    # --- far end (speaker's callback thread) ------------------------------------------------------

    def add_far_end(self, block: np.ndarray, rate: int, latency_s: float | None) -> None:
        """The block the output callback just handed to the device (mono, at `rate`), with the time
        until its first sample is played (None: unknown, taken as 0). Never blocks."""
        latency = 0.0 if latency_s is None else latency_s
        self._inbox.append((self._clock.now() + latency, rate, np.array(block, dtype=np.float32)))
        if latency_s is not None:
            with self._lock:
                self._out_latency.append(latency_s)

    @property
    def shifts(self) -> list[int]:
        """The delay jumps the linear canceller's filter followed, in samples (none with AEC3)."""
        return [] if self._linear is None else list(self._linear.shifts)

    @property
    def user_talking(self) -> bool:
        """The user talks (Silero VAD on the cleaned microphone, `barge_in.py`; always False without
        `barge_in_duck_db`). Written on the microphone's thread, read on the speaker's (barge-in
        ducking)."""
        return self._barge_in is not None and self._barge_in.user_talking

    # --- near end (microphone's thread) -----------------------------------------------------------

    def process(
        self, frame: np.ndarray, latency_s: float | None = None, device_latency_s: float | None = None
    ) -> np.ndarray:
        """The microphone frame with the echo removed; `latency_s`: how long ago its last sample was
        captured (None: unknown, taken as 0); `device_latency_s`: the input latency the stream's
        timestamps give (without kame's own re-blocking), for the delay estimate (default: `latency_s`)."""
        started = time.thread_time()
        near = as_frame(frame)
        latency = 0.0 if latency_s is None else latency_s
        reported = latency_s if device_latency_s is None else device_latency_s
        if reported is not None:
            with self._lock:
                self._in_latency.append(reported)
        capture_end = self._clock.now() - latency
        while self._inbox:
            self._far.place(*self._inbox.popleft())
        lead = self._lead_s()
        far = self._far.read(capture_end - FRAME_SECONDS + lead, FRAME_SAMPLES)
        self._far.forget_before(capture_end - _MAX_FAR_S)
        self._residual_last = lead
        self.last_far = far
        if self._linear is not None and self._barge_in is not None:
            # The speaker turns the assistant down by as much while the user talks (`ducking.py`).
            self._linear.ducked_db = self._duck_db if self._barge_in.user_talking else 0.0
            self._linear.voice_heard = self._barge_in.voice_heard
        out = self._cancel(near, far, round(lead * 1000))
        if self._barge_in is not None:
            was_talking = self._barge_in.user_talking
            self._barge_in.push(out if self._linear is None else self._ungated)
            if self._gentle_history is not None:
                self._keep_gentle(starts_talking=self._barge_in.user_talking and not was_talking)
        far_power = float(np.dot(far, far))
        self._account(near, out, far_power / FRAME_SAMPLES, started)
        return out

    def take_revision(self) -> np.ndarray | None:
        """Once per onset of the user's voice, as the last frame made the barge-in VAD sure of them: the
        last samples of the output up to that frame's end (24 kHz) as they should reach the STT, the
        suppressor's gentle gain throughout. Until the VAD heard the user, their first syllable met the
        suppressor's full depth; the front-end heard it so, but the STT still holds that audio and
        can hear it again. None otherwise (and once taken)."""
        revision, self._revision = self._revision, None
        return revision

    def _keep_gentle(self, starts_talking: bool) -> None:
        """The frame just written to the ring's slot stays there; the next frame takes the oldest."""
        history = self._gentle_history
        assert history is not None and self._barge_in is not None
        self._gentle_slot = (self._gentle_slot + 1) % _GENTLE_FRAMES
        start = self._gentle_slot * FRAME_SAMPLES
        if starts_talking:
            began = min(self._barge_in.voice_began_s() + _REVISE_BEFORE_S, _REVISE_MAX_S)
            revision = np.roll(history, -start)  # oldest first: the frame just written ends it
            if self._apm is not None:
                from livekit import rtc

                # Once per onset: a fresh module, settled over the lead, rather than one more kept
                # running on every frame.
                self._clean_up(
                    revision, rtc.AudioProcessingModule(echo_cancellation=False, **self._clean_up_options)
                )
            self._revision = revision[-round(began * SAMPLE_RATE) :]
        self._gentle = history[start : start + FRAME_SAMPLES]

    def process_pair(self, near: np.ndarray, far: np.ndarray) -> np.ndarray:
        """A recorded frame pair: `far` is what was played while `near` was captured (same index)."""
        started = time.thread_time()
        near, far = as_frame(near), as_frame(far)
        self.last_far = far
        out = self._cancel(near, far, 0)  # the delay is unknown: AEC3's own estimator finds it
        self._account(near, out, float(np.mean(far * far)), started)
        return out

    def _cancel(self, near: np.ndarray, far: np.ndarray, delay_ms: int) -> np.ndarray:
        """One frame through the engine: kame's linear canceller (20 ms blocks, then WebRTC's
        high-pass / noise suppression if asked), or AEC3 (10 ms chunks, the far chunk first)."""
        if self._linear is not None:
            out = np.empty(FRAME_SAMPLES, dtype=np.float32)
            for i in range(0, FRAME_SAMPLES, _LINEAR_BLOCK):
                part = slice(i, i + _LINEAR_BLOCK)
                out[part] = self._linear.process(near[part], far[part])
                if self._barge_in is not None:
                    self._ungated[part] = self._linear.ungated
                    self._gentle[part] = self._linear.gentle
            if self._apm_ungated is not None:
                self._clean_up(self._ungated, self._apm_ungated)
            self._far_fed += FRAME_SAMPLES
            if self._apm is not None:
                self._clean_up(out, self._apm)
            return out
        return self._aec3(near, far, delay_ms)

    def _clean_up(self, frame: np.ndarray, apm: Any) -> None:
        """WebRTC's high-pass filter / noise suppressor alone (its AEC3 off) on `frame` (whole 10 ms
        chunks), in place, 10 ms at a time."""
        for k in range(frame.shape[0] // CHUNK_SAMPLES):
            part = slice(k * CHUNK_SAMPLES, (k + 1) * CHUNK_SAMPLES)
            self._near_pcm[:] = _to_pcm16(frame[part])
            apm.process_stream(self._near_frame)
            frame[part] = self._near_pcm.astype(np.float32) / 32768.0

    def _aec3(self, near: np.ndarray, far: np.ndarray, delay_ms: int) -> np.ndarray:
        """AEC3 on one frame, 10 ms at a time: the far chunk first, then the near chunk it leads."""
        out = np.empty(FRAME_SAMPLES, dtype=np.float32)
        for k in range(_CHUNKS_PER_FRAME):
            part = slice(k * CHUNK_SAMPLES, (k + 1) * CHUNK_SAMPLES)
            self._far_pcm[:] = _to_pcm16(far[part])
            self._apm.process_reverse_stream(self._far_frame)
            self._apm.set_stream_delay_ms(delay_ms)
            self._near_pcm[:] = _to_pcm16(near[part])
            self._apm.process_stream(self._near_frame)
            out[part] = self._near_pcm.astype(np.float32) / 32768.0
        self._far_fed += FRAME_SAMPLES
        return out

    def _lead_s(self) -> float:
        """How far the far end fed to AEC3 leads the microphone: `residual_ms` at most (AEC3 needs the
        echo after its reference: a margin for timestamp error), and never past the far-end audio the
        speaker has already handed over (the device delay bounds what exists)."""
        delay = self._delay_s()  # without re-blocking: a lower bound of what has been handed over
        if delay is None:
            return 0.0
        return min(self._residual_s, max(0.0, delay - _AVAILABLE_MARGIN_S))

    def _delay_s(self) -> float | None:
        with self._lock:
            out_lat = sorted(self._out_latency)
            in_lat = sorted(self._in_latency)
        if not out_lat and not in_lat:
            return None
        return _median(out_lat) + _median(in_lat)

    # --- statistics (any thread) ------------------------------------------------------------------

    def stats(self) -> AecStats:
        delay_s = self._delay_s()
        delay = None if delay_s is None else 1000.0 * delay_s
        erle = None
        if self._near_power is not None and self._out_power is not None:
            erle = 10.0 * math.log10(max(self._near_power, 1e-20) / max(self._out_power, 1e-20))
        return AecStats(
            frames=self._frames,
            erle_db=erle,
            delay_ms=delay,
            residual_ms=None if self._residual_last is None else 1000.0 * self._residual_last,
            cpu_ms_per_frame=1000.0 * self._cpu_total / max(1, self._frames),
            cpu_ms_max=1000.0 * self._cpu_max,
            far_fed_s=self._far_fed / SAMPLE_RATE,
        )

    # --- internals --------------------------------------------------------------------------------

    def _account(self, near: np.ndarray, out: np.ndarray, far_power: float, started: float) -> None:
        if far_power > _FAR_ACTIVE:
            near_p, out_p = float(np.mean(near * near)), float(np.mean(out * out))
            if self._near_power is None or self._out_power is None:
                self._near_power, self._out_power = near_p, out_p
            else:
                self._near_power += _ERLE_ALPHA * (near_p - self._near_power)
                self._out_power += _ERLE_ALPHA * (out_p - self._out_power)
        self._frames += 1
        cpu = time.thread_time() - started
        self._cpu_total += cpu
        self._cpu_max = max(self._cpu_max, cpu)
        if self._events is not None and self._frames % self._status_every == 0:
            s = self.stats()
            self._events.publish(
                AecStatus(self._clock.now(), s.erle_db, s.delay_ms, s.residual_ms, s.cpu_ms_per_frame)
            )


def _to_pcm16(samples: np.ndarray) -> np.ndarray:
    return (np.clip(samples, -1.0, 32767 / 32768) * 32768.0).round().astype(np.int16)


def _median(values: list[float]) -> float:
    return values[len(values) // 2] if values else 0.0


class FarTimeline:
    """The far end at 24 kHz on the session's time line, read back by time window.

    `place` puts each played block where its timestamp says: blocks that follow each other within
    `_SLIP_S` (timestamps jitter by a millisecond or two) are kept contiguous, judged at the
    device's rate since the resampler hands its output out in uneven pieces; a jump is a latency
    change: the device played nothing for a while (silence is inserted), or the new block replaces
    the end of the last one, as in the air. `read` returns silence where nothing was played.
    """

    def __init__(self) -> None:
        self._buf: np.ndarray = np.zeros(0, dtype=np.float32)
        self._start: float | None = None
        """Session time at which `_buf[0]` was played."""
        self._next_play: float | None = None
        """Where the next block starts if it follows the last one without a gap."""
        self._resamplers: dict[int, StreamResampler] = {}

    def place(self, play_time: float, rate: int, block: np.ndarray) -> None:
        resampler = self._resamplers.get(rate)
        if resampler is None:
            resampler = self._resamplers[rate] = StreamResampler(rate, SAMPLE_RATE)
        if self._start is None or self._next_play is None:
            self._start = play_time
        else:
            gap = play_time - self._next_play
            if gap > _SLIP_S:
                self._append(resampler.process(np.zeros(round(gap * rate), dtype=np.float32)))
            elif gap < -_SLIP_S:
                keep = max(0, self._buf.shape[0] - round(-gap * SAMPLE_RATE))
                self._buf = self._buf[:keep]
            else:
                play_time = self._next_play  # jitter: keep the stream contiguous
        self._next_play = play_time + block.shape[0] / rate
        self._append(resampler.process(block))

    def read(self, t0: float, n: int) -> np.ndarray:
        """The `n` samples played from session time `t0` on (silence where nothing was)."""
        out = np.zeros(n, dtype=np.float32)
        if self._start is None:
            return out
        i0 = round((t0 - self._start) * SAMPLE_RATE)
        lo, hi = max(i0, 0), min(i0 + n, self._buf.shape[0])
        if hi > lo:
            out[lo - i0 : hi - i0] = self._buf[lo:hi]
        return out

    def forget_before(self, t: float) -> None:
        """Drops what was played before `t` (it can no longer be asked for)."""
        if self._start is None:
            return
        drop = min(round((t - self._start) * SAMPLE_RATE), self._buf.shape[0])
        if drop > SAMPLE_RATE // 2:  # in steps, not every frame
            self._buf = self._buf[drop:].copy()
            self._start += drop / SAMPLE_RATE

    def _append(self, samples: np.ndarray) -> None:
        self._buf = np.concatenate((self._buf, samples)) if self._buf.size else samples.copy()
