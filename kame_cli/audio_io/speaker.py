"""The speaker as a frame sink: a sounddevice output stream whose callback pulls frames from a queue."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from kame_cli.audio_io.callbacks import FarEndTap, PlaybackCallback
from kame_cli.audio_io.devices import negotiate_stream_format, open_stream, resolve_device
from kame_cli.audio_io.ducking import BargeInDuck
from kame_cli.audio_io.frames import as_frame
from kame_cli.bus import EventSink
from kame_cli.clock import SessionClock


class SpeakerSink:
    """Plays 24 kHz frames on a device (resampled where it cannot run at 24 kHz); underruns play silence.

    Playback starts once `prebuffer_frames` are queued; underruns are counted and published as
    AudioXrun events when `events` is given.
    """

    def __init__(
        self,
        device: int | str | None = None,
        *,
        clock: SessionClock | None = None,
        events: EventSink | None = None,
        device_rate: int | None = None,
        prebuffer_frames: int = 1,
        max_queued_frames: int = 25,
        close_timeout_s: float = 0.5,
    ) -> None:
        self.device = resolve_device(device, "output")
        self.device_rate, self.channels = negotiate_stream_format(self.device, "output", device_rate)
        self._clock = clock or SessionClock()
        self._close_timeout_s = close_timeout_s
        self._playback = PlaybackCallback(
            self.device_rate,
            clock=self._clock,
            events=events,
            prebuffer_frames=prebuffer_frames,
            max_queued_frames=max_queued_frames,
        )
        self._stream: Any = None
        self._closed = False

    @property
    def underruns(self) -> int:
        return self._playback.underruns

    @property
    def dropped_frames(self) -> int:
        return self._playback.dropped_frames

    @property
    def frames_played(self) -> int:
        """Frames handed to the device so far."""
        return self._playback.frames_taken

    def tap_far_end(self, tap: FarEndTap) -> None:
        """[aec] Hands every block as played to `tap` (the echo canceller's reference); before start()."""
        self._playback.far_end = tap

    def duck_with(self, duck: BargeInDuck) -> None:
        """[aec] Turns the assistant down while the user talks over it (`ducking.py`); before start()."""
        self._playback.duck = duck

    def start(self) -> None:
        """Opens and starts the output stream; DeviceError if the device refuses it."""
        if self._stream is not None:
            raise RuntimeError("SpeakerSink.start() was already called")
        self._stream = open_stream("output", self.device, self.device_rate, self.channels, self._playback)

    def write(self, step: int, pcm: np.ndarray) -> None:
        """Queues the frame for playback; never blocks (a full queue drops its oldest frame)."""
        self._playback.enqueue(as_frame(pcm))

    def close(self) -> None:
        """Plays out what is queued (at most `close_timeout_s`), then stops and closes the stream."""
        if self._closed:
            return
        self._closed = True
        self._playback.draining = True
        if self._stream is None:
            return
        deadline = time.monotonic() + self._close_timeout_s
        while self._stream.active and not self._playback.idle and time.monotonic() < deadline:
            time.sleep(0.01)
        # abort(): the device's own buffer (tens of ms) is not worth waiting for past the deadline.
        self._stream.abort()
        self._stream.close()
