"""The microphone as a frame source: a sounddevice input stream at 24 kHz mono, one frame per block."""

from __future__ import annotations

import threading
from typing import Any

from kame_cli.audio_io.callbacks import CaptureCallback
from kame_cli.audio_io.devices import negotiate_stream_format, open_stream, portaudio, resolve_device
from kame_cli.audio_io.frames import FrameCallback
from kame_cli.bus import EventSink
from kame_cli.clock import SessionClock
from kame_cli.errors import DeviceError


class MicrophoneSource:
    """Captures from a device; where it cannot run at 24 kHz it runs at its own rate and is resampled.

    `on_frame` is called on PortAudio's callback thread and must not block. Input overflows are
    counted and published as AudioXrun events when `events` is given. A stream that ends without
    `stop()` (the device went away, or `on_frame` raised) ends the source with `error` set.
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
        self._abort: type[Exception] = Exception  # sounddevice.CallbackAbort once start() imported it
        self._stopping = False
        self._ended = threading.Event()
        self._error: BaseException | None = None
        self.started_at: float | None = None

    @property
    def frames_delivered(self) -> int:
        return 0 if self._capture is None else self._capture.frames_delivered

    @property
    def overflows(self) -> int:
        return 0 if self._capture is None else self._capture.overflows

    @property
    def input_latency_s(self) -> tuple[float | None, float | None]:
        """[aec] (age of the frame being delivered's last sample, the device's input latency) from the
        stream timestamps; None where the host API gives none."""
        if self._capture is None:
            return None, None
        return self._capture.latency_s, self._capture.device_latency_s

    @property
    def duration_s(self) -> None:
        return None

    @property
    def error(self) -> BaseException | None:
        """Why capture ended early: what `on_frame` raised, or a DeviceError when the stream died."""
        return self._error

    def start(self, on_frame: FrameCallback) -> None:
        """Opens and starts the input stream; DeviceError if the device refuses it."""
        if self._capture is not None:
            raise RuntimeError("MicrophoneSource.start() was already called")
        sd = portaudio()
        self._abort = sd.CallbackAbort
        self._capture = CaptureCallback(self.device_rate, on_frame, clock=self._clock, events=self._events)
        self._stream = open_stream(
            "input",
            self.device,
            self.device_rate,
            self.channels,
            self._on_block,
            on_start=self._mark_start,
            finished_callback=self._on_finished,
        )

    def _mark_start(self) -> None:
        self.started_at = self._clock.now()

    def stop(self) -> None:
        """Stops capturing at once (pending input is not needed) and closes the stream."""
        self._stopping = True
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.abort()
            stream.close()

    def wait(self, timeout: float | None = None) -> bool:
        """True if the stream ended without stop() (device gone, or `on_frame` raised: see `error`)."""
        return self._ended.wait(timeout)

    def _name(self) -> str:
        return "(default)" if self.device is None else str(self.device)

    def _on_block(self, indata: Any, frames: int, time: Any, status: Any) -> None:
        assert self._capture is not None
        try:
            self._capture(indata, frames, time, status)
        except Exception as exc:  # anything on_frame raises: kept for the session, not printed by cffi
            self._error = exc
            raise self._abort from None  # PortAudio ends the stream; _on_finished follows

    def _on_finished(self) -> None:
        if self._stopping:
            return
        if self._error is None:
            self._error = DeviceError(
                f"input device {self._name()} stopped delivering audio (unplugged or failed): "
                "reconnect it, or pick another with --input-device (run `kame devices`)"
            )
        self._ended.set()
