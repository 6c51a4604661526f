"""The tandem wired: source -> front-end loop (+ STT tee) -> sinks; STT -> oracle -> front-end.

Threads and the state each one alone writes:
- the audio source (sound-card callback or file reader) only moves frames on;
- the front-end loop owns the model and the oracle stream (`FrontendLoop`);
- the STT worker owns the recognizer; the oracle producer owns the conversation and the LLM stream;
- the router thread forwards transcripts and the front-end's words to the oracle producer;
- the caller's thread (the UI) owns the view state.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from kame_cli.bus import EventBus, Subscription
from kame_cli.clock import SessionClock
from kame_cli.events import BackendStatus, Event, FinalTranscript, FrontendText, PartialTranscript

_ROUTED = (PartialTranscript, FinalTranscript, FrontendText)
_FAST_MODE_BACKLOG = 8  # frames queued in the front-end before a fast file source waits


def _is_routed(event: Event) -> bool:
    return isinstance(event, _ROUTED)


class Part(Protocol):
    """A long-running part with a bounded shutdown."""

    def start(self) -> None: ...

    def stop(self, timeout: float = 1.0) -> None: ...


class FrameSource(Protocol):
    def start(self, on_frame: Any) -> None: ...

    def stop(self) -> None: ...

    def wait(self, timeout: float | None = None) -> bool: ...


class FrameSink(Protocol):
    def start(self) -> None: ...

    def write(self, step: int, pcm: np.ndarray) -> None: ...

    def close(self) -> None: ...


@dataclass
class SessionParts:
    """Everything a session runs, built (models loaded) before it starts."""

    frontend_loop: Any
    """`kame_cli.engine.loop.FrontendLoop`."""
    source: FrameSource
    output_sinks: Sequence[FrameSink]
    input_sinks: Sequence[FrameSink] = ()
    stt: Any | None = None
    """`kame_cli.backends.stt.SttWorker`, or None to run the front-end alone."""
    oracle: Any | None = None
    """`kame_cli.backends.oracle.OracleProducer`, or None."""
    fast: bool = False
    """The source is a file read as fast as possible: it may wait for the front-end."""


class Session:
    """Starts the parts in dependency order (sinks, engine, STT, oracle, source), stops them in reverse."""

    def __init__(self, parts: SessionParts, bus: EventBus, clock: SessionClock) -> None:
        self.parts = parts
        self.bus = bus
        self.clock = clock
        self.frames_in = 0
        self._router_sub: Subscription | None = None
        self._router: threading.Thread | None = None
        self._stopping = threading.Event()
        self._stopped = False

    # --- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        p = self.parts
        for sink in (*p.output_sinks, *p.input_sinks):
            sink.start()
        p.frontend_loop.start()
        if p.stt is not None:
            p.stt.start()
        if p.oracle is not None:
            p.oracle.start()
            self._router_sub = self.bus.subscribe(
                "router", maxsize=0, accept=lambda e: isinstance(e, _ROUTED)
            )
            self._router = threading.Thread(target=self._route, name="kame-router", daemon=True)
            self._router.start()
        self.bus.publish(BackendStatus(self.clock.now(), "session", "ok", "started"))
        p.source.start(self._on_input_frame)

    def wait_input_end(self, timeout: float | None = None) -> bool:
        """True once the source is exhausted (end of file); a microphone never is."""
        return self.parts.source.wait(timeout)

    def finish(self, interrupt: threading.Event | None = None, timeout: float = 60.0) -> None:
        """End of input: the front-end steps what it holds (so output matches input), then all stop."""
        p = self.parts
        p.frontend_loop.end_input()
        if p.stt is not None:
            p.stt.end_input()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not (interrupt is not None and interrupt.is_set()):
            if p.frontend_loop.join(0.05):
                break
        self.stop()

    def stop(self, timeout: float = 1.0) -> None:
        """Stop everything, newest first; every part gets a bounded share of `timeout`. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self._stopping.set()
        p = self.parts
        p.source.stop()
        p.frontend_loop.stop(timeout=timeout / 2)
        if p.oracle is not None:
            p.oracle.stop(timeout=timeout / 4)
        if self._router is not None:
            self._router.join(timeout / 10)
        if self._router_sub is not None:
            self.bus.unsubscribe(self._router_sub)
        if p.stt is not None:
            p.stt.stop(timeout=timeout / 4)
        for sink in (*p.output_sinks, *p.input_sinks):
            sink.close()
        self.bus.publish(BackendStatus(self.clock.now(), "session", "ok", "stopped"))

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    # --- data paths -------------------------------------------------------------------------------

    def _on_input_frame(self, pcm: np.ndarray) -> None:
        # Called on the source's thread (a sound-card callback for the microphone): never blocks,
        # except that a fast file source waits while the front-end holds a backlog.
        p = self.parts
        if p.fast:
            while p.frontend_loop.backlog > _FAST_MODE_BACKLOG and not self._stopping.is_set():
                time.sleep(0.002)
        index = self.frames_in
        self.frames_in += 1
        p.frontend_loop.submit_frame(pcm)
        if p.stt is not None:
            p.stt.submit_frame(pcm)
        for sink in p.input_sinks:
            sink.write(index, pcm)

    def _route(self) -> None:
        sub = self._router_sub
        oracle = self.parts.oracle
        assert sub is not None and oracle is not None
        while not self._stopping.is_set():
            try:
                event: Event = sub.queue.get(timeout=0.1)
            except queue.Empty:
                continue
            oracle.on_event(event)
