"""The echo canceller on a session's microphone path: whether it runs, its reference, and the one hook.

The hook is a callable, frame in and frame out, that the session calls on every microphone frame
before any consumer (front-end, STT) sees it. Live, its reference is the speaker's output as played
(tapped in the speaker's callback); when a recorded session is replayed (`--echo-reference`), it is
the recording's assistant channel, frame for frame.

`EchoSpec` is what the command line asks (`--aec`, `--headphones`, `--echo-reference`); the session
checks it with the other flags (`session.options.TalkOptions.validate`, which calls `EchoSpec.check`;
`kame talk --server` calls that alone) and passes it down whole to
`build_microphone_echo`, which resolves it against the profile's `[audio]` table (`aec_mode`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kame_cli.audio_io.aec import EchoCanceller, resolve_aec
from kame_cli.audio_io.config import AEC_MODES, AudioConfig
from kame_cli.bus import EventSink
from kame_cli.clock import FRAME_SAMPLES, SessionClock
from kame_cli.errors import ConfigError

if TYPE_CHECKING:
    from kame_cli.audio_io.speaker import SpeakerSink


class MicrophoneEcho:
    """The session's microphone-path hook: `hook(pcm)` returns the frame with the echo removed."""

    def __init__(
        self,
        canceller: EchoCanceller,
        *,
        input_latency: Callable[[], tuple[float | None, float | None]] | None = None,
        reference: Iterator[np.ndarray] | None = None,
    ) -> None:
        self.canceller = canceller
        self._input_latency = input_latency
        self._reference = reference
        self._silence = np.zeros(FRAME_SAMPLES, dtype=np.float32)

    def __call__(self, pcm: np.ndarray) -> np.ndarray:
        if self._reference is not None:
            far = next(self._reference, None)  # a reference shorter than the input: silence after it
            return self.canceller.process_pair(pcm, self._silence if far is None else far)
        if self._input_latency is None:
            return self.canceller.process(pcm)
        frame_latency, device_latency = self._input_latency()
        return self.canceller.process(pcm, frame_latency, device_latency)

    def take_revision(self) -> np.ndarray | None:
        """What the STT should hear in place of the last samples it got (`EchoCanceller.take_revision`)."""
        return self.canceller.take_revision()


@dataclass(frozen=True)
class EchoSpec:
    """The command line's echo settings; None keeps the profile's `[audio] aec`."""

    aec: str | None = None
    """`auto` (on when a speaker plays into the microphone), `on` or `off`."""
    headphones: bool = False
    """The assistant plays into headphones: no echo to cancel (same as `aec = "off"`)."""
    reference: Path | None = None
    """Replay a recorded session: the assistant's output as played while the input was recorded (a
    log's output.wav, or the same `--output-stereo` file)."""

    def check(self) -> None:
        """The echo flags' own contradictions, as one line (`TalkOptions.validate` calls it with the
        checks between these and the other flags)."""
        if self.aec is not None and self.aec not in AEC_MODES:
            raise ConfigError(f"--aec must be one of {', '.join(AEC_MODES)} (got {self.aec!r})")
        if self.headphones and self.aec == "on":
            raise ConfigError("--headphones turns echo cancellation off: drop --aec on, or drop --headphones")


def aec_mode(cfg: AudioConfig, echo: EchoSpec) -> str:
    """The profile's `[audio] aec` with the command line's (`EchoSpec.check` passed) over it."""
    if echo.headphones:
        return "off"
    return echo.aec if echo.aec is not None else cfg.aec


def input_channel(input_file: Path | None, echo: EchoSpec) -> int | None:
    """0 (the user's channel) when the input is the same two-channel recording as the reference."""
    if input_file is None or echo.reference is None:
        return None
    if input_file.resolve() != echo.reference.resolve():
        return None
    import soundfile

    try:
        channels = soundfile.info(os.fsencode(input_file)).channels  # bytes: a name that is not UTF-8
    except (soundfile.LibsndfileError, OSError):
        return None  # FileSource reports the unreadable file in its own words
    return 0 if channels == 2 else None


def build_microphone_echo(
    cfg: AudioConfig,
    echo: EchoSpec,
    *,
    source: Any,
    speaker: SpeakerSink | None,
    events: EventSink | None,
    clock: SessionClock,
) -> MicrophoneEcho | None:
    """The hook for this session, or None when the canceller does not run (`--aec off` leaves the
    microphone path untouched, bit for bit). Taps the speaker's output when it runs live."""
    from kame_cli.audio_io.files import FileSource
    from kame_cli.audio_io.microphone import MicrophoneSource

    microphone = isinstance(source, MicrophoneSource)
    playing = microphone and speaker is not None
    recorded = echo.reference
    if not resolve_aec(
        aec_mode(cfg, echo), speaker_and_microphone=playing, echo_reference=recorded is not None
    ):
        return None
    reference: Iterator[np.ndarray] | None = None
    if recorded is not None:
        probe = FileSource(recorded, paced=False)
        channel = 1 if probe.source_channels == 2 else None
        probe.stop()
        reference = FileSource(recorded, paced=False, channel=channel).frames()
    try:
        canceller = EchoCanceller(
            engine=cfg.aec_engine,
            residual_suppression=cfg.residual_suppression,
            noise_suppression=cfg.noise_suppression,
            high_pass=cfg.high_pass,
            clock=clock,
            events=events,
            barge_in_duck_db=cfg.barge_in_duck_db if speaker is not None and reference is None else 0.0,
        )
    except ImportError as err:
        raise ConfigError(
            f"echo cancellation needs the livekit package ({err}): pip install livekit, or use --aec off"
        ) from None
    if reference is not None:
        return MicrophoneEcho(canceller, reference=reference)
    if speaker is not None:
        speaker.tap_far_end(canceller.add_far_end)
        if cfg.barge_in_duck_db > 0:
            from kame_cli.audio_io.ducking import BargeInDuck

            speaker.duck_with(BargeInDuck(cfg.barge_in_duck_db, lambda: canceller.user_talking))
    latency = (lambda: source.input_latency_s) if microphone else None  # (frame, device) latencies
    return MicrophoneEcho(canceller, input_latency=latency)
