"""The tandem wired: source -> front-end loop (+ STT tee) -> sinks; STT -> oracle -> front-end.

Threads and the state each one alone writes:
- the audio source (sound-card callback or file reader) only moves frames on;
- the front-end loop owns the model and the oracle stream (`FrontendLoop`);
- the STT worker owns the recognizer; the oracle producer owns the conversation and the LLM stream
  (transcripts and the front-end's words reach its inbox straight from the bus, never blocking);
- the caller's thread (the UI) owns the view state and polls the parts' health.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kame_cli.audio_io import FrameSink, FrameSource
from kame_cli.bus import EventBus, Forward
from kame_cli.clock import SessionClock
from kame_cli.errors import SessionError
from kame_cli.events import BackendStatus, Event, FinalTranscript, FrontendText, PartialTranscript

_TO_ORACLE = (PartialTranscript, FinalTranscript, FrontendText)
_FAST_MODE_BACKLOG = 8  # frames queued in the front-end before a fast file source waits
_STOP_SHARE_S = 0.5  # bounded join per part at shutdown


def _for_oracle(event: Event) -> bool:
    return isinstance(event, _TO_ORACLE)


@dataclass
class SessionParts:
    """Everything a session runs, built (models loaded) before it starts."""

    frontend_loop: Any
    """`kame_cli.engine.loop.FrontendLoop`; its `on_output` writes to `output`."""
    source: FrameSource
    output: FrameSink
    """Where the assistant's voice goes (a `TeeSink` of speaker and files)."""
    recorders: Sequence[FrameSink] = ()
    """Where the user's voice is recorded (the log's input.wav, the left channel of --output-stereo)."""
    stt: Any | None = None
    """`kame_cli.backends.stt.worker.SttWorker`, or None to run the front-end alone."""
    oracle: Any | None = None
    """`kame_cli.backends.oracle.producer.OracleProducer`, or None."""
    fast: bool = False
    """The source is a file read as fast as possible: it may wait for the front-end."""
    echo: Callable[[np.ndarray], np.ndarray] | None = None
    """[aec] The echo canceller on the microphone path (`audio_io.aec_wiring.MicrophoneEcho`), or None."""


class Session:
    """Starts the parts in dependency order (sinks, engine, STT, oracle, source), stops them in reverse."""

    def __init__(self, parts: SessionParts, bus: EventBus, clock: SessionClock) -> None:
        self.parts = parts
        self.bus = bus
        self.clock = clock
        self.frames_in = 0
        self.unfinished: list[str] = []
        """Parts that did not stop within their share of the shutdown time."""
        self._to_oracle: Forward | None = None
        self._stopping = threading.Event()
        self._stopped = False

    # --- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        p = self.parts
        p.output.start()
        for recorder in p.recorders:
            recorder.start()
        p.frontend_loop.start()
        if p.stt is not None:
            p.stt.start()
        if p.oracle is not None:
            p.oracle.start()
            self._to_oracle = self.bus.forward("oracle", p.oracle.on_event, _for_oracle)
        self.bus.publish(BackendStatus(self.clock.now(), "session", "ok", "started"))
        p.source.start(self._on_input_frame)

    def wait_input_end(self, timeout: float | None = None) -> bool:
        """True once the source is exhausted (end of file); a microphone never is."""
        return self.parts.source.wait(timeout)

    def failure(self) -> SessionError | None:
        """What broke a part the session cannot run without (the audio source, the front-end)."""
        source_error = getattr(self.parts.source, "error", None)
        if source_error is not None:
            return SessionError(f"audio input failed: {_one_line(source_error)}")
        loop_error = self.parts.frontend_loop.error
        if loop_error is not None:
            return SessionError(f"the front-end stopped: {_one_line(loop_error)}")
        return None

    def finish(self, interrupt: threading.Event, timeout: float = 60.0) -> None:
        """End of input: the front-end steps what it holds (output matches input), the STT closes the
        user's last turn; then everything stops. `interrupt` (Ctrl-C) cuts the wait short."""
        p = self.parts
        p.frontend_loop.end_input()
        if p.stt is not None:
            p.stt.end_input()
        deadline = time.monotonic() + timeout
        while not interrupt.is_set() and time.monotonic() < deadline:
            if p.frontend_loop.join(0.05):
                break
        while p.stt is not None and not interrupt.is_set() and time.monotonic() < deadline:
            if p.stt.wait_flushed(0.05):
                break
        self.stop()

    def stop(self) -> None:
        """Stop everything, newest first, each part within a bounded join; idempotent.

        Every sink is closed (so every WAV is valid) and the "stopped" event published even when
        a part fails to stop or a sink fails to close; a sink's error is raised after that.
        """
        if self._stopped:
            return
        self._stopped = True
        self._stopping.set()
        p = self.parts
        p.source.stop()
        if self._to_oracle is not None:
            self.bus.unsubscribe(self._to_oracle)
        for name, part in (("front-end", p.frontend_loop), ("oracle", p.oracle), ("stt", p.stt)):
            if part is not None and part.stop(timeout=_STOP_SHARE_S) is False:
                self.unfinished.append(name)
        errors: list[BaseException] = []
        for sink in (p.output, *p.recorders):
            try:
                sink.close()
            except Exception as err:
                errors.append(err)
        message = "stopped" if not self.unfinished else f"stopped ({', '.join(self.unfinished)} still busy)"
        self.bus.publish(BackendStatus(self.clock.now(), "session", "ok", message))
        if errors:
            raise errors[0]

    # --- data path --------------------------------------------------------------------------------

    def _on_input_frame(self, pcm: np.ndarray) -> None:
        # Called on the source's thread (a sound-card callback for the microphone): never blocks,
        # except that a fast file source waits while the front-end holds a backlog.
        p = self.parts
        if p.fast:
            while p.frontend_loop.backlog > _FAST_MODE_BACKLOG and not self._stopping.is_set():
                time.sleep(0.002)
        index = self.frames_in
        self.frames_in += 1
        # [aec] Front-end and STT hear the frame with the echo removed; the recorders keep the raw
        # microphone, so a logged session can be replayed through the canceller (--echo-reference).
        heard = pcm if p.echo is None else p.echo(pcm)
        p.frontend_loop.submit_frame(heard)
        if p.stt is not None:
            p.stt.submit_frame(heard)
        for recorder in p.recorders:
            recorder.write(index, pcm)


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
