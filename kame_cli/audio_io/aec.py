"""Echo cancellation on the microphone path: WebRTC's AEC3, through livekit's `AudioProcessingModule`.

The far end (the assistant's voice exactly as the speaker's callback handed it to the device, at the
device's rate, silence and underruns included) and the near end (the microphone's 24 kHz frames) are
put on one time line by the streams' timestamps: each far-end block carries the time its first
sample reaches the DAC, each microphone frame the time its last sample left the ADC. Before each
10 ms near-end chunk the canceller feeds AEC3 the far-end audio that was played up to `residual_ms`
after that chunk was captured, so AEC3's own delay estimator only has to find a short, steady
residual (the acoustic path and the timestamps' error) whatever the devices' latency is; a latency
change moves the feed at once, with no restart and no re-convergence.

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

from kame_cli.audio_io.frames import SampleFifo, as_frame
from kame_cli.audio_io.resampling import StreamResampler
from kame_cli.bus import EventSink
from kame_cli.clock import FRAME_SAMPLES, SAMPLE_RATE, SessionClock
from kame_cli.events import AecStatus

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
_SLIP_S = 0.005  # a timestamp this far from where the previous block ended is a latency change


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
    far_dropped_s: float
    """Far-end audio dropped as stale (no microphone frame came to pair it with)."""


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
        noise_suppression: bool = False,
        high_pass: bool = True,
        residual_ms: float = 60.0,
        clock: SessionClock | None = None,
        events: EventSink | None = None,
        status_every_frames: int = 12,
    ) -> None:
        from livekit import rtc

        self._apm = rtc.AudioProcessingModule(
            echo_cancellation=True, noise_suppression=noise_suppression, high_pass_filter=high_pass
        )
        # One buffer each way, reused: AudioFrame keeps a bytearray without copying it.
        self._near_bytes = bytearray(CHUNK_SAMPLES * 2)
        self._far_bytes = bytearray(CHUNK_SAMPLES * 2)
        self._near_frame = rtc.AudioFrame(self._near_bytes, SAMPLE_RATE, 1, CHUNK_SAMPLES)
        self._far_frame = rtc.AudioFrame(self._far_bytes, SAMPLE_RATE, 1, CHUNK_SAMPLES)
        self._near_pcm = np.frombuffer(self._near_bytes, dtype=np.int16)
        self._far_pcm = np.frombuffer(self._far_bytes, dtype=np.int16)
        self._residual_s = residual_ms / 1000.0
        self._clock = clock or SessionClock()
        self._events = events
        self._status_every = max(1, status_every_frames)
        # Filled on the speaker's thread, drained on the microphone's (deque append/popleft are atomic).
        self._inbox: deque[tuple[float, int, np.ndarray]] = deque()
        self._resamplers: dict[int, StreamResampler] = {}
        self._far = SampleFifo(4 * FRAME_SAMPLES)
        self._far_head: float | None = None
        """Session time at which the far FIFO's first sample was played."""
        self._out_latency: deque[float] = deque(maxlen=_DELAY_WINDOW)
        self._in_latency: deque[float] = deque(maxlen=_DELAY_WINDOW)
        self._lock = threading.Lock()  # guards the latency windows, read by `stats` from any thread
        self._frames = 0
        self._cpu_total = 0.0
        self._cpu_max = 0.0
        self._near_power: float | None = None
        self._out_power: float | None = None
        self._residual_last: float | None = None
        self._far_dropped = 0
        self._far_fed = 0

    # --- far end (speaker's callback thread) ------------------------------------------------------

    def add_far_end(self, block: np.ndarray, rate: int, latency_s: float | None) -> None:
        """The block the output callback just handed to the device (mono, at `rate`), with the time
        until its first sample is played (None: unknown, taken as 0). Never blocks."""
        latency = 0.0 if latency_s is None else latency_s
        self._inbox.append((self._clock.now() + latency, rate, np.array(block, dtype=np.float32)))
        if latency_s is not None:
            with self._lock:
                self._out_latency.append(latency_s)

    # --- near end (microphone's thread) -----------------------------------------------------------

    def process(self, frame: np.ndarray, latency_s: float | None = None) -> np.ndarray:
        """The microphone frame with the echo removed; `latency_s`: how long ago its last sample was
        captured (None: unknown, taken as 0)."""
        started = time.thread_time()
        near = as_frame(frame)
        latency = 0.0 if latency_s is None else latency_s
        if latency_s is not None:
            with self._lock:
                self._in_latency.append(latency_s)
        capture_end = self._clock.now() - latency
        self._drain_inbox(capture_end)
        out = np.empty(FRAME_SAMPLES, dtype=np.float32)
        far_power = 0.0
        for k in range(_CHUNKS_PER_FRAME):
            chunk_end = capture_end - (_CHUNKS_PER_FRAME - 1 - k) * _CHUNK_S
            far_power += self._feed_far_until(chunk_end + self._residual_s)
            residual = 0.0 if self._far_head is None else max(0.0, self._far_head - chunk_end)
            self._residual_last = residual
            self._apm.set_stream_delay_ms(round(residual * 1000))
            out[k * CHUNK_SAMPLES : (k + 1) * CHUNK_SAMPLES] = self._near_chunk(near, k)
        self._account(near, out, far_power / FRAME_SAMPLES, started)
        return out

    def process_pair(self, near: np.ndarray, far: np.ndarray) -> np.ndarray:
        """A recorded frame pair: `far` is what was played while `near` was captured (same index)."""
        started = time.thread_time()
        near, far = as_frame(near), as_frame(far)
        out = np.empty(FRAME_SAMPLES, dtype=np.float32)
        for k in range(_CHUNKS_PER_FRAME):
            self._far_chunk(far[k * CHUNK_SAMPLES : (k + 1) * CHUNK_SAMPLES])
            self._apm.set_stream_delay_ms(0)  # unknown: AEC3's own estimator finds it
            out[k * CHUNK_SAMPLES : (k + 1) * CHUNK_SAMPLES] = self._near_chunk(near, k)
        self._account(near, out, float(np.mean(far * far)), started)
        return out

    # --- statistics (any thread) ------------------------------------------------------------------

    def stats(self) -> AecStats:
        with self._lock:
            out_lat = sorted(self._out_latency)
            in_lat = sorted(self._in_latency)
        delay = None
        if out_lat or in_lat:
            delay = 1000.0 * (_median(out_lat) + _median(in_lat))
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
            far_dropped_s=self._far_dropped / SAMPLE_RATE,
        )

    # --- internals --------------------------------------------------------------------------------

    def _drain_inbox(self, capture_end: float) -> None:
        while self._inbox:
            play_time, rate, block = self._inbox.popleft()
            resampler = self._resamplers.get(rate)
            if resampler is None:
                resampler = self._resamplers[rate] = StreamResampler(rate, SAMPLE_RATE)
            samples = resampler.process(block)
            self._place(play_time, samples)
        stale = len(self._far) - round(_MAX_FAR_S * SAMPLE_RATE)
        if self._far_head is not None and stale > 0:
            self._far.pop(stale)
            self._far_dropped += stale
            self._far_head += stale / SAMPLE_RATE

    def _place(self, play_time: float, samples: np.ndarray) -> None:
        """Appends a block where its timestamp puts it on the far end's time line.

        Blocks normally follow each other sample for sample, and timestamps jitter by a millisecond
        or two: within `_SLIP_S` the block is appended as is. A latency change shows as a jump: the
        device played nothing for a while (silence is inserted) or the newest block overlaps audio
        not yet fed (that audio is dropped), as it did in the air.
        """
        if self._far_head is None:
            self._far_head = play_time
        gap = play_time - (self._far_head + len(self._far) / SAMPLE_RATE)
        if gap > _SLIP_S:
            self._far.push(np.zeros(round(gap * SAMPLE_RATE), dtype=np.float32))
        elif gap < -_SLIP_S:
            overlap = min(len(self._far), round(-gap * SAMPLE_RATE))
            kept = self._far.pop(len(self._far) - overlap)
            self._far.pop(overlap)
            self._far.push(kept)
            self._far_dropped += overlap
            if len(self._far) == 0:
                self._far_head = play_time
        self._far.push(samples)

    def _feed_far_until(self, limit: float) -> float:
        """Feeds AEC3 the far chunks played before `limit`; returns their summed squares."""
        power = 0.0
        while self._far_head is not None and len(self._far) >= CHUNK_SAMPLES and self._far_head + _CHUNK_S <= limit:
            chunk = self._far.pop(CHUNK_SAMPLES)
            self._far_head += _CHUNK_S
            power += float(np.dot(chunk, chunk))
            self._far_chunk(chunk)
        return power

    def _far_chunk(self, chunk: np.ndarray) -> None:
        self._far_fed += chunk.shape[0]
        self._far_pcm[:] = _to_pcm16(chunk)
        self._apm.process_reverse_stream(self._far_frame)

    def _near_chunk(self, near: np.ndarray, k: int) -> np.ndarray:
        self._near_pcm[:] = _to_pcm16(near[k * CHUNK_SAMPLES : (k + 1) * CHUNK_SAMPLES])
        self._apm.process_stream(self._near_frame)
        return self._near_pcm.astype(np.float32) / 32768.0

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

