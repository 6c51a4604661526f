"""The front-end process: the model, the audio source and sinks, and the real-time loop, alone.

Nothing else runs in this interpreter: no STT, no LiteLLM, no log, no panel. The GIL is shared by
every thread of a process, and Python work beside the loop takes its step p99 from ~20 ms to
hundreds (FACTS.md). The threads here only move data: the source's feeder (or PortAudio's
callback), the WAV writers, and the link's sender and reader to the supervisor.

Input path, per 80 ms frame, on the source's thread (`FrontendProcess._on_input_frame`):
    source -> `InputPath.process` (the echo canceller's place) -> loop + STT frames -> recorders
Output path, on the loop's thread: loop -> `InputPath.reference` (far-end reference) -> sinks.

Run as `python -m kame_cli.session.frontend_proc --fd N` by the supervisor (a fresh interpreter:
CUDA-safe, like multiprocessing's `spawn`); the socket on descriptor N carries everything.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from kame_cli.clock import FRAME_SAMPLES
from kame_cli.errors import EXIT_BAD_INPUT, EXIT_FAILURE, AudioFileError, DeviceError, KameError
from kame_cli.events import Event, OracleAppend, OracleClear, OracleReset
from kame_cli.session.link import ChildLink, Link, serve_child
from kame_cli.session.wire import (
    Closed,
    EndOfInput,
    Failure,
    FrontendDone,
    FrontendSetup,
    Go,
    Notice,
    Ready,
    Stop,
    UserFrame,
    one_line,
)

if TYPE_CHECKING:
    from kame_cli.audio_io.aec_wiring import MicrophoneEcho

_FAST_MODE_BACKLOG = 8  # frames queued in the front-end before a fast file source waits
_POLL_S = 0.05
_STOP_SHARE_S = 0.5


class InputPath:
    """What the user's frames go through before the front-end and the STT hear them.

    `process` gets each microphone frame (24 kHz, 1920 float32 samples) and returns the one the
    front-end and the STT hear: the echo canceller's output when it runs, else the frame itself
    (bit-exact). The canceller's far-end reference is tapped in the speaker's callback, as played
    (`SpeakerSink.tap_far_end`), or read from a recording (`--echo-reference`); `reference` gets
    each frame the assistant says, in step order, for any other use.
    """

    def __init__(self, echo: MicrophoneEcho | None = None) -> None:
        self.echo = echo

    def process(self, pcm: np.ndarray) -> np.ndarray:
        return pcm if self.echo is None else self.echo(pcm)

    def take_revision(self) -> np.ndarray | None:
        """After `process`: samples the STT should hear in place of its last ones (the user's onset,
        `EchoCanceller.take_revision`), or None."""
        return None if self.echo is None else self.echo.take_revision()

    def reference(self, index: int, pcm: np.ndarray) -> None:
        return None


class _ToSupervisor:
    """The event sink of every part in this process: events go to the supervisor, in order."""

    def __init__(self, link: Link) -> None:
        self._link = link

    def publish(self, event: Event) -> None:
        self._link.send(event)


def compute_device(cfg: Any) -> Literal["cuda", "cpu"]:
    """`auto` means the GPU; without one, only small local models may fall back to the CPU."""
    from kame_cli.engine.checkpoint import looks_like_path
    from kame_cli.engine.loader import resolve_device

    device: Literal["cuda", "cpu"] = "cuda" if resolve_device(cfg.device).type == "cuda" else "cpu"
    if (
        cfg.device == "auto"
        and device == "cpu"
        and not (cfg.model == "random:tiny" or looks_like_path(cfg.model))
    ):
        raise DeviceError(
            f"no CUDA GPU found for front-end {cfg.model!r}: use --device cpu to force the CPU (far slower "
            "than real time for a 7B model), or --model random:tiny for an offline demo"
        )
    return device


def start_frontend(link: Link, build: Callable[[], None]) -> bool:
    """Start the link, then `build` (load the model, warm up); False once the supervisor was told
    in one line why it failed."""
    link.start()
    try:
        build()
    # Whatever breaks while loading (a torch error, a broken install) ends in one line.
    except Exception as err:
        link.send(Failure.of(err, "the front-end failed to start"))
        return False
    return True


def frontend_ready(frontend: Any, model: str) -> Ready:
    """What the supervisor learns of a loaded front-end: its name and device, and the text
    tokenizer the oracle, the panel and the client need."""
    tokenizer = frontend.text_tokenizer
    pieces = [frontend.text_piece(i) or "" for i in range(tokenizer.vocab_size())]
    return Ready(
        "frontend",
        {
            "name": frontend.name,
            "device": str(frontend.device),
            "model": model,
            "start_id": frontend.text_start_id,
            "pieces": pieces,
            "tokenizer_proto": tokenizer.serialized_model_proto(),
        },
    )


class FrontendProcess:
    """Builds the front-end's parts from a `FrontendSetup`, runs them until `Stop`, closes the files."""

    def __init__(self, conn: Connection, setup: FrontendSetup) -> None:
        self.setup = setup
        self.input_path = InputPath()
        self._stopping = threading.Event()
        self.link = ChildLink(conn, "frontend", self._on_message, frame_limit=setup.frame_queue)
        self._events = _ToSupervisor(self.link)
        self.loop: Any = None
        self.source: Any = None
        self.output: Any = None
        self._outputs: list[Any] = []
        """What `output` tees to: the output WAVs and the speaker."""
        self.recorders: list[Any] = []
        self._frames_in = 0
        self._last_output = -1

    # --- messages from the supervisor (reader thread) --------------------------------------------

    def _on_message(self, message: Any) -> None:
        if isinstance(message, OracleReset | OracleAppend | OracleClear):
            loop = self.loop
            if loop is not None:
                loop.send_oracle(message)
        else:
            self.link.defer(message)

    # --- life cycle (main thread) -----------------------------------------------------------------

    def run(self) -> int:
        if not start_frontend(self.link, self._build):
            return self._close()
        if not self._wait_go():
            return self._close()
        self._serve()
        return self._close()

    def _build(self) -> None:
        from dataclasses import replace

        from kame_cli.clock import SessionClock
        from kame_cli.priority import request_realtime

        s = self.setup
        clock = SessionClock(s.clock_origin)
        if s.realtime:
            # Before any thread exists, so that the loop, the source and the sinks inherit it.
            refused = request_realtime()
            if refused is not None:
                self.link.send(
                    Notice(f"--realtime refused ({refused}); the front-end runs at normal priority")
                )
        self._audio_parts(clock)
        cfg = replace(s.frontend, device=compute_device(s.frontend))
        from kame_cli.audio_io import TeeSink
        from kame_cli.engine.loader import Sampling, load_frontend
        from kame_cli.engine.loop import FrontendLoop

        frontend = load_frontend(cfg)
        self.output = TeeSink(*self._outputs)
        self.loop = FrontendLoop(
            frontend,
            self._events,
            clock,
            on_output=self._on_output,
            seed=cfg.seed,
            sampling=Sampling.from_config(cfg),
            max_lag_ms=s.max_lag_ms,
            step_delay_ms=s.step_delay_ms,
        )
        self.loop.start()  # warm-up, before the clock of the conversation starts
        self.link.send(frontend_ready(frontend, cfg.model))

    def _audio_parts(self, clock: Any) -> None:
        """Source and sinks; opened before the model loads, so a bad file or device fails first."""
        from kame_cli.audio_io import FileSource, MicrophoneSource, SpeakerSink, WavSink

        s = self.setup
        if s.input_wav_fd is not None:
            self.recorders.append(WavSink("input.wav", private=True, fd=s.input_wav_fd))
        if s.output_wav_fd is not None:
            self._outputs.append(WavSink("output.wav", private=True, fd=s.output_wav_fd))
        if s.input.file is not None:
            from kame_cli.audio_io.aec_wiring import input_channel  # a stereo recording: user left

            channel = input_channel(s.input.file, s.echo)
            self.source = FileSource(s.input.file, paced=not s.input.fast, clock=clock, channel=channel)
        else:
            self.source = MicrophoneSource(s.input.device, clock=clock, events=self._events)
        if s.output.file is not None:
            wav = WavSink(s.output.file, stereo=s.output.stereo)
            self._outputs.append(wav)
            if s.output.stereo:
                self.recorders.append(_UserChannel(wav))
        speaker = None
        if s.output.speaker:
            speaker = SpeakerSink(s.output.device, clock=clock, events=self._events)
            self._outputs.append(speaker)
        from kame_cli.audio_io.aec_wiring import build_microphone_echo

        self.input_path.echo = build_microphone_echo(
            s.audio, s.echo, source=self.source, speaker=speaker, events=self._events, clock=clock
        )

    def _wait_go(self) -> bool:
        for message in self.link.messages(_POLL_S):
            if isinstance(message, Go | Stop):
                return isinstance(message, Go)
        return False

    def _serve(self) -> None:
        assert self.loop is not None and self.output is not None
        self.output.start()
        for recorder in self.recorders:
            recorder.start()
        self.source.start(self._on_input_frame)
        input_ended = stepping_rest = failure_sent = False
        for message in self.link.messages(_POLL_S, idle=True):
            if isinstance(message, Stop):
                return
            if not input_ended and self.source.wait(0):
                input_ended = True
                error = self.source.error
                if error is not None:
                    # A file that cannot be decoded part-way is bad input; a device that stopped
                    # delivering (unplugged) is a runtime failure.
                    code = EXIT_BAD_INPUT if isinstance(error, AudioFileError) else EXIT_FAILURE
                    self.link.send(Failure(f"audio input failed: {one_line(error)}", code))
                    failure_sent = True
                else:
                    self.loop.end_input()
                    self.link.send(EndOfInput(self._frames_in))
                    stepping_rest = True
            if stepping_rest and self.loop.join(0):
                stepping_rest = False
                if self.loop.error is None:
                    self.link.send(FrontendDone(self.loop.steps))
            if self.loop.error is not None and not failure_sent:
                failure_sent = True
                self.link.send(Failure(f"the front-end stopped: {one_line(self.loop.error)}", 1))

    def _close(self) -> int:
        """Stop every part (each bounded), close every file, tell the supervisor, and go."""
        self._stopping.set()
        failures: list[Failure] = []
        if self.source is not None:
            self.source.stop()
        if self.loop is not None:
            self.loop.stop(timeout=_STOP_SHARE_S)
            if self._last_output < self._frames_in - 1:
                # Frames still queued at a stop were never stepped: silence in their place keeps
                # each output file as long as the input, aligned frame for frame (a speaker has
                # nothing to catch up with).
                from kame_cli.audio_io import WavSink

                for sink in self._outputs:
                    if isinstance(sink, WavSink):
                        sink.write(self._frames_in - 1, np.zeros(FRAME_SAMPLES, np.float32))
        sinks = [s for s in (self.output, *self.recorders) if s is not None]
        if self.output is None:
            sinks.extend(self._outputs)
        for sink in sinks:
            try:
                sink.close()
            except KameError as err:
                failures.append(Failure(str(err), err.exit_code))
            except OSError as err:
                failures.append(Failure(f"an output file could not be closed ({err.strerror})", 1))
        loop = self.loop
        stats = {
            "steps": loop.steps if loop else 0,
            "deadline_misses": loop.deadline_misses if loop else 0,
            "dropped_frames": loop.lag_dropped_frames + loop.dropped_frames if loop else 0,
            "stt_frames_dropped": self.link.dropped_frames,
        }
        self.link.send(Closed(tuple(failures), stats))
        self.link.close(timeout=1.0)
        return 0

    # --- data path --------------------------------------------------------------------------------

    def _on_input_frame(self, pcm: np.ndarray) -> None:
        # On the source's thread (a sound-card callback for the microphone): never blocks, except
        # that a fast file source waits while the front-end holds a backlog.
        loop = self.loop
        if self.setup.input.fast:
            while loop.backlog > _FAST_MODE_BACKLOG and not self._stopping.is_set():
                time.sleep(0.002)
        index = self._frames_in
        self._frames_in += 1
        heard = self.input_path.process(pcm)
        revision = self.input_path.take_revision()
        loop.submit_frame(heard)
        if self.setup.frames_to_backend:
            revised = b"" if revision is None else np.asarray(revision, dtype=np.float32).tobytes()
            self.link.send_frame(UserFrame(index, np.asarray(heard, dtype=np.float32).tobytes(), revised))
        for recorder in self.recorders:
            recorder.write(index, pcm)

    def _on_output(self, index: int, pcm: np.ndarray) -> None:
        self._last_output = index
        self.input_path.reference(index, pcm)
        self.output.write(index, pcm)


class _UserChannel:
    """Records the user's frames in the left channel of a stereo `WavSink` (closed as an output)."""

    def __init__(self, wav: Any) -> None:
        self._wav = wav

    def start(self) -> None:
        return None

    def write(self, step: int, pcm: Any) -> None:
        self._wav.write_user(step, pcm)

    def close(self) -> None:
        return None


def main(argv: list[str] | None = None) -> None:
    serve_child(argv, lambda conn, setup: FrontendProcess(conn, setup).run())


if __name__ == "__main__":
    main()
