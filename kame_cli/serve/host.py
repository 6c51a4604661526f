"""`kame serve`'s front-end process: the model, loaded once, and one session's real-time loop at a time.

Nothing else runs in this interpreter (no network, no STT, no LiteLLM, no log), for the same reason
as `kame talk`'s front-end process: Python work beside the loop takes its p99 from ~20 ms to
hundreds. Besides the loop, a pacer thread ticks every 80 ms on this machine's clock: each tick
submits the client's next frame, or silence when none has come (a late frame, counted). A client
can thus be slow, bursty or gone: the loop still steps in real time and never waits for it.

Run as `python -m kame_cli.serve.host --fd N` by `kame serve`.
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from dataclasses import replace
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from kame_cli.clock import FRAME_SAMPLES, FRAME_SECONDS, SessionClock
from kame_cli.events import Event, OracleAppend, OracleClear, OracleReset
from kame_cli.serve.wire import (
    ClientFrame,
    EndSession,
    HostSetup,
    OutputFrame,
    SessionEnded,
    SessionEvent,
    SessionStarted,
    StartSession,
)
from kame_cli.session.link import Link, serve_child
from kame_cli.session.wire import Closed, Failure, Ready, Stop, one_line

_POLL_S = 0.05
_OUTPUT_QUEUE = 25  # output frames (2 s) held for a stalled supervisor before they are dropped
_STOP_S = 0.5


class _Tagged:
    """The loop's event sink: each event goes to the supervisor tagged with its session."""

    def __init__(self, link: Link, session: int) -> None:
        self._link = link
        self._session = session

    def publish(self, event: Event) -> None:
        self._link.send(SessionEvent(self._session, event))


class Pacer:
    """Feeds a session's loop one frame per 80 ms tick: the client's oldest waiting frame, or silence.

    `offer` (the link's reader thread) holds at most `jitter_frames`; beyond that the oldest is
    dropped, so a client that sends faster than real time (or in bursts) adds bounded delay.
    """

    def __init__(self, submit: Any, jitter_frames: int) -> None:
        self._submit = submit
        self._frames: collections.deque[np.ndarray] = collections.deque()
        self._limit = max(1, jitter_frames)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.late_frames = 0
        """Ticks with no client frame: the loop stepped on silence."""
        self.dropped_frames = 0
        """Client frames dropped because `jitter_frames` already waited."""
        self.client_frames = 0
        self._thread = threading.Thread(target=self._run, name="kame-serve-pacer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def offer(self, pcm: np.ndarray) -> None:
        with self._lock:
            self.client_frames += 1
            self._frames.append(pcm)
            while len(self._frames) > self._limit:
                self._frames.popleft()
                self.dropped_frames += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(1.0)

    def _run(self) -> None:
        silence = np.zeros(FRAME_SAMPLES, dtype=np.float32)
        start = time.monotonic()
        tick = 0
        while not self._stop.is_set():
            with self._lock:
                frame = self._frames.popleft() if self._frames else None
            if frame is None:
                self.late_frames += 1
                frame = silence
            self._submit(frame)
            tick += 1
            # On the absolute schedule: a late wake-up is made up for, not carried forward.
            delay = start + tick * FRAME_SECONDS - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)


class _Running:
    """The session being stepped: its loop and its pacer."""

    def __init__(self, session: int, loop: Any, pacer: Pacer) -> None:
        self.session = session
        self.loop = loop
        self.pacer = pacer


class FrontendHost:
    """Loads the front-end once, then steps the sessions the supervisor starts, one at a time."""

    def __init__(self, conn: Connection, setup: HostSetup) -> None:
        self.setup = setup
        self._control: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._peer_gone = threading.Event()
        self.link = Link(conn, "frontend", self._on_message, self._peer_gone.set, frame_limit=_OUTPUT_QUEUE)
        self.frontend: Any = None
        self._running: _Running | None = None
        self._batched: Any = None
        """`serve.batch_host.BatchedSessions` with --max-sessions above 1, else None."""

    def _on_message(self, message: Any) -> None:
        # The link's reader thread: frames and oracle commands go straight on (neither call blocks).
        batched = self._batched
        if batched is not None and batched.on_message(message):
            return
        running = self._running
        if isinstance(message, ClientFrame):
            if running is not None and running.session == message.session:
                running.pacer.offer(np.frombuffer(message.pcm, dtype=np.float32))
        elif isinstance(message, SessionEvent):
            command = message.event
            if (
                running is not None
                and running.session == message.session
                and isinstance(command, OracleReset | OracleAppend | OracleClear)
            ):
                running.loop.send_oracle(command)
        else:
            self._control.put(message)

    def run(self) -> int:
        self.link.start()
        try:
            self._load()
        # Whatever breaks while loading (a torch error, a broken install) ends in one line.
        except Exception as err:
            self.link.send(Failure.of(err, "the front-end failed to start"))
            return self._close()
        while not self._peer_gone.is_set():
            try:
                message = self._control.get(timeout=_POLL_S)
            except queue.Empty:
                self._check_loop()
                continue
            if isinstance(message, StartSession):
                self._start(message)
            elif isinstance(message, EndSession):
                self._end(message.session)
            elif isinstance(message, Stop):
                break
        return self._close()

    def _load(self) -> None:
        from kame_cli.engine.loader import load_frontend
        from kame_cli.session.frontend_proc import compute_device

        cfg = replace(self.setup.frontend, device=compute_device(self.setup.frontend))
        self.setup = replace(self.setup, frontend=cfg)
        frontend = self.frontend = load_frontend(cfg)
        if self.setup.max_sessions > 1:
            from kame_cli.serve.batch_host import BatchedSessions

            batched = BatchedSessions(frontend, self.setup, self.link)
            batched.start()  # warm at the batch size before "ready"
            self._batched = batched
        pieces = [frontend.text_piece(i) or "" for i in range(frontend.text_tokenizer.vocab_size())]
        self.link.send(
            Ready(
                "frontend",
                {
                    "name": frontend.name,
                    "device": str(frontend.device),
                    "model": cfg.model,
                    "start_id": frontend.text_start_id,
                    "pieces": pieces,
                    "tokenizer_proto": frontend.text_tokenizer.serialized_model_proto(),
                },
            )
        )

    def _start(self, message: StartSession) -> None:
        from kame_cli.engine.loader import Sampling
        from kame_cli.engine.loop import FrontendLoop

        if self._batched is not None:
            self._batched.start_session(message.session, message.clock_origin)
            return
        if self._running is not None:
            self._end(self._running.session)
        cfg = self.setup.frontend
        session = message.session
        link = self.link

        def on_output(index: int, pcm: np.ndarray) -> None:
            link.send_frame(
                OutputFrame(session, index, np.asarray(pcm, np.float32).tobytes(), time.monotonic())
            )

        loop = FrontendLoop(
            self.frontend,
            _Tagged(link, session),
            SessionClock(message.clock_origin),
            on_output=on_output,
            seed=cfg.seed,
            sampling=Sampling.from_config(cfg),
            max_lag_ms=cfg.max_lag_ms,
        )
        try:
            loop.start()  # warm-up and a fresh streaming state, before the session's first frame
        except Exception as err:
            self.link.send(SessionEvent(session, Failure.of(err, "the front-end failed to start a session")))
            self.link.send(SessionEnded(session, {}))
            return
        pacer = Pacer(loop.submit_frame, self.setup.jitter_frames)
        self._running = _Running(session, loop, pacer)
        pacer.start()
        self.link.send(SessionStarted(session))

    def _check_loop(self) -> None:
        if self._batched is not None:
            self._batched.check()
        running = self._running
        if running is not None and running.loop.error is not None:
            error = running.loop.error
            self.link.send(
                SessionEvent(running.session, Failure(f"the front-end stopped: {one_line(error)}", 1))
            )
            self._end(running.session)

    def _end(self, session: int) -> None:
        if self._batched is not None:
            self._batched.end_session(session)
        running = self._running
        if running is None or running.session != session:
            return
        self._running = None
        running.pacer.stop()
        running.loop.stop(timeout=_STOP_S)
        loop, pacer = running.loop, running.pacer
        self.link.send(
            SessionEnded(
                session,
                {
                    "steps": loop.steps,
                    "deadline_misses": loop.deadline_misses,
                    "dropped_frames": loop.lag_dropped_frames + pacer.dropped_frames,
                    "late_frames": pacer.late_frames,
                    "client_frames": pacer.client_frames,
                },
            )
        )

    def _close(self) -> int:
        if self._batched is not None:
            self._batched.close()
        if self._running is not None:
            self._end(self._running.session)
        self.link.send(Closed((), {}))
        self.link.close(timeout=1.0)
        return 0


def main(argv: list[str] | None = None) -> None:
    serve_child(argv, lambda conn, setup: FrontendHost(conn, setup).run())


if __name__ == "__main__":
    main()
