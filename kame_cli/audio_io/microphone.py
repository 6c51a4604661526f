"""The microphone as a frame source: a sounddevice input stream at 24 kHz mono, one frame per block."""

from __future__ import annotations

import threading
from typing import Any

from kame_cli.audio_io.callbacks import CaptureCallback
from kame_cli.audio_io.devices import negotiate_stream_format, portaudio, resolve_device
from kame_cli.audio_io.frames import FrameCallback, frame_blocksize
from kame_cli.bus import EventSink
from kame_cli.clock import SessionClock
from kame_cli.errors import DeviceError


class MicrophoneSource:
    """Captures from a device; where it cannot run at 24 kHz it runs at its own rate and is resampled.

    `on_frame` is called on PortAudio's callback thread and must not block. Input overflows are
    counted and published as AudioXrun events when `events` is given.
    """

    def __init__(
        self,
        device: int | str | None = None,
        *,
        clock: SessionClock | None = None,
        events: EventSink | None = None,
        device_rate: int | None = None,
    ) -> None:
        self.device = resolve_device(device, "input")
        self.device_rate, self.channels = negotiate_stream_format(self.device, "input", device_rate)
        self._clock = clock or SessionClock()
        self._events = events
        self._stream: Any = None
        self._capture: CaptureCallback | None = None
        self._stopping = False
        self._ended = threading.Event()
        self.started_at: float | None = None

    @property
    def frames_delivered(self) -> int:
        return 0 if self._capture is None else self._capture.frames_delivered

    @property
    def overflows(self) -> int:
        return 0 if self._capture is None else self._capture.overflows

    @property
    def duration_s(self) -> None:
        return None

    def start(self, on_frame: FrameCallback) -> None:
        """Opens and starts the input stream; DeviceError if the device refuses it."""
        if self._capture is not None:
            raise RuntimeError("MicrophoneSource.start() was already called")
        sd = portaudio()
        self._capture = CaptureCallback(self.device_rate, on_frame, clock=self._clock, events=self._events)
        try:
            self._stream = sd.InputStream(
                device=self.device,
                samplerate=self.device_rate,
                channels=self.channels,
                dtype="float32",
                blocksize=frame_blocksize(self.device_rate),
                callback=self._capture,
                finished_callback=self._on_finished,
            )
            self.started_at = self._clock.now()
            self._stream.start()
        except sd.PortAudioError as exc:
            raise DeviceError(
                f"cannot open input device {self.device if self.device is not None else '(default)'} "
                f"at {self.device_rate} Hz ({exc}): pick another with --input-device (run `kame devices`)"
            ) from exc

    def stop(self) -> None:
        """Stops capturing at once (pending input is not needed) and closes the stream."""
        self._stopping = True
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.abort()
            stream.close()

    def wait(self, timeout: float | None = None) -> bool:
        """True if the stream ended without stop() (the device went away); False on timeout."""
        return self._ended.wait(timeout)

    def _on_finished(self) -> None:
        if not self._stopping:
            self._ended.set()
