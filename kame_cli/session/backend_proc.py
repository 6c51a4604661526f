"""The back-end process: the streaming STT and the oracle producer (LiteLLM), on spare CPU time.

It loads at niceness 10; once the session runs, its threads are under SCHED_IDLE, lifted back
to niceness 10 while the STT is starved (`priority.StarvationGuard`).

It hears the user's frames and the front-end's words from the supervisor, and sends back events
(transcripts, oracle chunks, statuses) and oracle commands for the front-end. If it dies, the
supervisor starts another one once; the front-end never waits for it.

Run as `python -m kame_cli.session.backend_proc --fd N` by the supervisor.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from kame_cli.clock import FRAME_SAMPLES, FRAME_SECONDS, SessionClock
from kame_cli.errors import KameError
from kame_cli.events import Event, FinalTranscript, FrontendText, PartialTranscript
from kame_cli.priority import BACKGROUND_NICENESS, StarvationGuard, deprioritize_process_tree
from kame_cli.session.link import ChildLink, Link, serve_child
from kame_cli.session.wire import (
    BackendSetup,
    Closed,
    EndOfInput,
    Failure,
    Go,
    Notice,
    Ready,
    Running,
    Stop,
    SttFlushed,
    UserFrame,
)

_POLL_S = 0.05
_MAX_GAP_FRAMES = 250
"""Frames lost upstream (20 s at most) that are filled with silence, so audio times stay true."""
_FLUSH_TIMEOUT_S = 60.0


class _Events:
    """The event sink of the STT and the producer: everything to the supervisor; transcripts to the
    producer too. A restarted back-end hears the session from frame `first index` on, so the STT's
    audio times are shifted by that much to stay on the session's audio clock."""

    def __init__(self, link: Link) -> None:
        self._link = link
        self.offset_s = 0.0
        self.oracle: Any = None

    def publish(self, event: Event) -> None:
        if self.offset_s and isinstance(event, PartialTranscript):
            event = dataclasses.replace(event, audio_end=event.audio_end + self.offset_s)
        elif self.offset_s and isinstance(event, FinalTranscript):
            event = dataclasses.replace(
                event,
                audio_start=event.audio_start + self.offset_s,
                audio_end=event.audio_end + self.offset_s,
            )
        self._link.send(event)
        if self.oracle is not None and isinstance(event, PartialTranscript | FinalTranscript):
            self.oracle.on_event(event)


class SttLag:
    """How far behind the user the STT is, for the `StarvationGuard`: the audio queued that its
    thread has not taken in, or, once the input ended, how long its last final has been awaited
    (no audio queues up then, however starved it is)."""

    def __init__(self, stt: Any = None) -> None:
        self.stt = stt
        self._ended_at: float | None = None

    def input_ended(self) -> None:
        self._ended_at = time.monotonic()

    def flushed(self) -> None:
        self._ended_at = None

    def __call__(self) -> float:
        queued = self.stt.backlog_s if self.stt is not None else 0.0
        ended_at = self._ended_at
        return max(queued, time.monotonic() - ended_at) if ended_at is not None else queued


class BackendProcess:
    """Loads the STT model (and LiteLLM), then runs `SttWorker` and `OracleProducer` until `Stop`."""

    def __init__(self, conn: Connection, setup: BackendSetup) -> None:
        self.setup = setup
        self.link = ChildLink(conn, "backend", self._on_message)
        self._events = _Events(self.link)
        self._clock = SessionClock(setup.clock_origin)
        self.stt: Any = None
        self.oracle: Any = None
        self.guard: StarvationGuard | None = None
        self._expected: int | None = None
        self._lag = SttLag()

    def _on_message(self, message: Any) -> None:
        # On the link's reader thread: frames and words go straight on (both calls never block).
        if isinstance(message, UserFrame):
            self._on_frame(message)
        elif isinstance(message, FrontendText):
            if self.oracle is not None:
                self.oracle.on_event(message)
        else:
            if isinstance(message, Stop) and self.guard is not None:
                self.guard.release()  # the main thread must not wait for spare CPU time to end
            self.link.defer(message)

    def _on_frame(self, message: UserFrame) -> None:
        stt = self.stt
        if stt is None:
            return
        if self._expected is None:
            self._events.offset_s = message.index * FRAME_SECONDS
        elif message.index > self._expected:
            silence = np.zeros(FRAME_SAMPLES, dtype=np.float32)
            for _ in range(min(message.index - self._expected, _MAX_GAP_FRAMES)):
                stt.submit_frame(silence)
        self._expected = message.index + 1
        stt.submit_frame(np.frombuffer(message.pcm, dtype=np.float32))
        if message.revision:
            stt.submit_revision(np.frombuffer(message.revision, dtype=np.float32))

    def run(self) -> int:
        self.link.start()
        try:
            model = self._load()
        # A broken install (CTranslate2, onnxruntime) must end in one line, not a traceback.
        except Exception as err:
            self.link.send(Failure.of(err, "the speech recognizer failed to load"))
            return self._close()
        self.link.send(Ready("backend"))
        for message in self.link.messages(_POLL_S):
            if isinstance(message, Go):
                self._start(model, message)
            elif isinstance(message, EndOfInput):
                self._end_input()
            elif isinstance(message, Stop):
                break
        return self._close()

    def _load(self) -> Any:
        from kame_cli.backends.stt.model import load_stt_model

        model = load_stt_model(self.setup.stt)
        # The recognizer's first decode, now rather than on the user's first words: the memory it
        # allocates is then in place before the session starts, and stays flat. CTranslate2 and
        # onnxruntime release the GIL, so it runs beside LiteLLM's import, which is pure Python.
        failed: list[BaseException] = []
        warming = threading.Thread(target=self._warm_up, args=(model, failed), name="kame-stt-warm-up")
        warming.start()
        if self.setup.llm is not None:
            from kame_cli.backends.oracle.llm import import_litellm

            # 6-7 s of CPU on a small machine (LiteLLM builds ~2400 pydantic models): now, while the
            # front-end loads, not when the first words come.
            import_litellm()
            if self.setup.knowledge is not None:  # [knowledge] the index, made or refreshed if stale
                from kame_cli.knowledge.session import prepare_index

                prepare_index(self.setup.knowledge, lambda line: self.link.send(Notice(line)))
        warming.join()
        if failed:
            raise failed[0]
        return model

    def _warm_up(self, model: Any, failed: list[BaseException]) -> None:
        from kame_cli.backends.stt.warmup import warm_up

        try:
            warm_up(model, self.setup.stt)
        except Exception as err:  # reported by _load, on the thread that reports load failures
            failed.append(err)

    def _start(self, model: Any, go: Go) -> None:
        from kame_cli.backends.stt.worker import SttWorker

        s = self.setup
        try:
            self.stt = SttWorker(s.stt, self._events, self._clock, model=model, realtime=s.realtime)
            self._lag.stt = self.stt
            if s.llm is not None and go.tokenizer_proto is not None:
                self.oracle = self._oracle(go)
                self.oracle.start()
                self._events.oracle = self.oracle
            self.stt.start()
        except KameError as err:
            self.link.send(Failure(str(err), err.exit_code))
            return
        if s.realtime:
            # Fed from a file as fast as it goes, nothing here has a deadline to protect: the
            # process stays at niceness 10, and its queue is a backlog by design, not starvation.
            # The link's reader stays out of SCHED_IDLE: it hears "stop", and queues the user's
            # frames, so a starved STT shows as a backlog.
            self.guard = StarvationGuard(self._lag, keep=self._link_reader)
            self.guard.start()
        self.link.send(Running())

    def _link_reader(self) -> list[int]:
        reader = f"kame-{self.link.name}-read"
        return [t.native_id for t in threading.enumerate() if t.name == reader and t.native_id is not None]

    def _oracle(self, go: Go) -> Any:
        import sentencepiece

        from kame_cli.backends.oracle.producer import OracleProducer

        tokenizer = sentencepiece.SentencePieceProcessor(model_proto=go.tokenizer_proto)
        s = self.setup
        assert s.llm is not None
        return OracleProducer(
            s.llm,
            s.policy,
            s.prompt,
            tokenize=lambda text: list(tokenizer.encode(text)),
            send=self.link.send,
            events=self._events,
            clock=self._clock,
            api_base=go.api_base,
            knowledge=self._retriever(),
            tools=s.tools,
        )

    def _retriever(self) -> Any:
        if self.setup.knowledge is None:
            return None
        from kame_cli.knowledge.session import open_retriever

        return open_retriever(self.setup.knowledge, events=self._events, clock=self._clock)

    def _end_input(self) -> None:
        stt = self.stt
        if stt is None:
            self.link.send(SttFlushed())
            return
        self._lag.input_ended()
        stt.end_input()

        def wait() -> None:
            stt.wait_flushed(_FLUSH_TIMEOUT_S)
            self._lag.flushed()
            self.link.send(SttFlushed())

        threading.Thread(target=wait, name="kame-stt-flush", daemon=True).start()

    def _close(self) -> int:
        # Nothing here writes files: the counts go out, then the threads end with the process
        # (os._exit), and a request in flight closes with its socket.
        stats = {}
        if self.guard is not None:
            self.guard.stop()
        if self.stt is not None:
            stats = {
                "stt_dropped_frames": self.stt.dropped_frames,
                "stt_decodes_skipped": self.stt.skipped_decodes,
            }
        self.link.send(Closed((), stats))
        self.link.close(timeout=0.2)
        return 0


def main(argv: list[str] | None = None) -> None:
    # First: every later thread inherits niceness 10; the threads that imports started already
    # (OpenBLAS's, for numpy) are lowered too.
    deprioritize_process_tree(os.getpid(), BACKGROUND_NICENESS)
    serve_child(argv, _serve)


def _serve(conn: Connection, setup: BackendSetup) -> int:
    return BackendProcess(conn, setup).run()


if __name__ == "__main__":
    main()
