"""The sound-card callbacks: they only move data (re-block, resample, count xruns), never wait.

Each is a callable with sounddevice's callback signature, kept apart from the stream so that the
data path can be driven block by block with the arrays and CallbackFlags PortAudio would pass.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from kame_cli.audio_io.aec import input_latency_s, output_latency_s
from kame_cli.audio_io.ducking import BargeInDuck
from kame_cli.audio_io.frames import FrameAssembler, FrameCallback, SampleFifo, downmix
from kame_cli.audio_io.resampling import StreamResampler
from kame_cli.bus import EventSink
from kame_cli.clock import FRAME_SAMPLES, SAMPLE_RATE, SessionClock
from kame_cli.events import AudioXrun

FarEndTap = Callable[[np.ndarray, int, "float | None"], None]
"""(block as played, device rate, seconds until its first sample reaches the DAC or None)."""


class CaptureCallback:
    """Input callback: device blocks (any rate, size, channels) -> 24 kHz mono frames for `on_frame`."""

    def __init__(
        self,
        device_rate: int,
        on_frame: FrameCallback,
        *,
        clock: SessionClock | None = None,
        events: EventSink | None = None,
    ) -> None:
        self.device_rate = device_rate
        self._resampler = StreamResampler(device_rate, SAMPLE_RATE)
        self._on_frame = on_frame
        self._assembler = FrameAssembler(self._emit)
        self._clock = clock or SessionClock()
        self._events = events
        self.overflows = 0
        self.latency_s: float | None = None
        """[aec] How long before this callback the last sample of the frame being handed to
        `on_frame` was captured (stream timestamps; None when the host API gives none)."""
        self.device_latency_s: float | None = None
        """[aec] The input latency from the timestamps alone: the latest block's last sample's age."""
        self._samples_in = 0
        self._samples_out = 0

    @property
    def frames_delivered(self) -> int:
        return self._assembler.frames_emitted

    def __call__(self, indata: np.ndarray, frames: int, time: Any, status: Any) -> None:
        if status.input_overflow:
            self.overflows += 1
            if self._events is not None:
                self._events.publish(AudioXrun(self._clock.now(), "input_overflow", self.overflows))
        self.device_latency_s = input_latency_s(time, frames, self.device_rate)  # [aec]
        samples = self._resampler.process(downmix(indata[:frames]))
        self._samples_in += frames
        self._samples_out += samples.shape[0]
        self._assembler.push(samples)

    def _emit(self, frame: np.ndarray) -> None:
        if self.device_latency_s is not None:  # [aec]
            # The frame ends before the block does: by what the assembler still holds after it, and
            # what the resampler has not handed out yet (soxr gives its output in uneven pieces).
            held = self._samples_in * SAMPLE_RATE / self.device_rate - self._samples_out
            later = self._assembler.pending_samples + max(0.0, held)
            self.latency_s = self.device_latency_s + later / SAMPLE_RATE
        self._on_frame(frame)


class PlaybackCallback:
    """Output callback: pulls queued 24 kHz frames, resampled to the device rate; a shortfall plays silence.

    Underruns are counted once playback has started (after `prebuffer_frames` were queued) and
    until `draining` is set at the end of the session.
    """

    def __init__(
        self,
        device_rate: int,
        *,
        clock: SessionClock | None = None,
        events: EventSink | None = None,
        prebuffer_frames: int = 1,
        max_queued_frames: int = 25,
    ) -> None:
        self.device_rate = device_rate
        self._resampler = StreamResampler(SAMPLE_RATE, device_rate)
        self._queue: deque[np.ndarray] = deque(maxlen=max_queued_frames)
        self._fifo = SampleFifo(4 * FRAME_SAMPLES * max(1, -(-device_rate // SAMPLE_RATE)))
        self._scratch = np.zeros(FRAME_SAMPLES, dtype=np.float32)
        self._clock = clock or SessionClock()
        self._events = events
        self._prebuffer = max(1, prebuffer_frames)
        self.started = False
        self.draining = False
        self._flushed = self._resampler.passthrough
        self.underruns = 0
        self.dropped_frames = 0
        """Frames thrown away (oldest first) because the queue was full: the consumer fell behind."""
        self.frames_taken = 0
        """Frames moved from the queue into the device stream."""
        self.far_end: FarEndTap | None = None
        """[aec] Gets every block exactly as handed to the device (mono, device rate, silence included)
        and the time until it is played: the echo canceller's reference. Must only copy."""
        self.duck: BargeInDuck | None = None
        """[aec] Turns the assistant down while the user talks over it, ahead of the device and of
        `far_end` (the reference is the block as played)."""

    def enqueue(self, frame: np.ndarray) -> None:
        """Adds a frame (never blocks); a full queue drops its oldest frame."""
        if len(self._queue) == self._queue.maxlen:
            self.dropped_frames += 1
        self._queue.append(frame)

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing buffered: everything written has gone to the device."""
        return not self._queue and len(self._fifo) == 0 and self._flushed

    def __call__(self, outdata: np.ndarray, frames: int, time: Any, status: Any) -> None:
        if not self.started:
            if len(self._queue) < self._prebuffer:
                outdata.fill(0)
                return
            self.started = True
        while len(self._fifo) < frames:
            try:
                frame = self._queue.popleft()
            except IndexError:
                break
            self._fifo.push(self._resampler.process(frame))
            self.frames_taken += 1
        if self.draining and not self._queue and not self._flushed and len(self._fifo) < frames:
            # The last few milliseconds are still inside the resampler's filter.
            self._fifo.push(self._resampler.flush())
            self._flushed = True
        if self._scratch.shape[0] < frames:
            self._scratch = np.zeros(frames, dtype=np.float32)
        block = self._scratch[:frames]
        filled = self._fifo.pop_into(block)
        block[filled:] = 0.0
        if self.duck is not None:
            self.duck.apply(block, self.device_rate)
        outdata[:frames] = block[:, None]
        if self.far_end is not None:  # [aec]
            self.far_end(block, self.device_rate, output_latency_s(time))
        short = filled < frames and not self.draining
        if short or status.output_underflow:
            self.underruns += 1
            if self._events is not None:
                self._events.publish(AudioXrun(self._clock.now(), "output_underrun", self.underruns))
