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
import threading
import time
from dataclasses import replace
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from kame_cli.clock import FRAME_SAMPLES, FRAME_SECONDS, SessionClock
from kame_cli.events import OracleCommand
from kame_cli.serve.session_link import SessionLink, route_input
from kame_cli.serve.wire import EndSession, HostSetup, StartSession
from kame_cli.session.frontend_proc import frontend_ready, start_frontend
from kame_cli.session.link import ChildLink, serve_child
from kame_cli.session.wire import Closed, Stop

_POLL_S = 0.05
_OUTPUT_QUEUE = 25  # output frames (2 s) held for a stalled supervisor before they are dropped
_STOP_S = 0.5


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
    """The session being stepped: its link, its loop and its pacer."""

    def __init__(self, tagged: SessionLink, loop: Any, pacer: Pacer) -> None:
        self.tagged = tagged
        self.session = tagged.session
        self.loop = loop
        self.pacer = pacer

    def offer(self, pcm: np.ndarray) -> None:
        self.pacer.offer(pcm)

    def send_oracle(self, command: OracleCommand) -> None:
        self.loop.send_oracle(command)


class FrontendHost:
    """Loads the front-end once, then steps the sessions the supervisor starts, one at a time."""

    def __init__(self, conn: Connection, setup: HostSetup) -> None:
        self.setup = setup
        self.link = ChildLink(conn, "frontend", self._on_message, frame_limit=_OUTPUT_QUEUE)
        self.frontend: Any = None
        self._running: _Running | None = None
        self._batched: Any = None
        """`serve.batch_host.BatchedSessions` with --max-sessions above 1, else None."""

    def _on_message(self, message: Any) -> None:
        # The link's reader thread: frames and oracle commands go straight on (neither call blocks).
        batched = self._batched
        if batched is not None and batched.on_message(message):
            return
        if not route_input(message, self._find):
            self.link.defer(message)

    def _find(self, session: int) -> _Running | None:
        running = self._running
        return running if running is not None and running.session == session else None

    def run(self) -> int:
        if not start_frontend(self.link, self._load):
            return self._close()
        for message in self.link.messages(_POLL_S, idle=True):
            if message is None:
                self._check_loop()
            elif isinstance(message, StartSession):
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
        self.link.send(frontend_ready(frontend, cfg.model))

    def _start(self, message: StartSession) -> None:
        from kame_cli.engine.loader import Sampling
        from kame_cli.engine.loop import FrontendLoop

        if self._batched is not None:
            self._batched.start_session(message.session, message.clock_origin)
            return
        if self._running is not None:
            self._end(self._running.session)
        cfg = self.setup.frontend
        tagged = SessionLink(self.link, message.session)
        loop = FrontendLoop(
            self.frontend,
            tagged,
            SessionClock(message.clock_origin),
            on_output=tagged.output,
            seed=cfg.seed,
            sampling=Sampling.from_config(cfg),
            max_lag_ms=cfg.max_lag_ms,
        )
        try:
            loop.start()  # warm-up and a fresh streaming state, before the session's first frame
        except Exception as err:
            tagged.refused(err)
            return
        pacer = Pacer(loop.submit_frame, self.setup.jitter_frames)
        self._running = _Running(tagged, loop, pacer)
        pacer.start()
        tagged.started()

    def _check_loop(self) -> None:
        if self._batched is not None:
            self._batched.check()
        running = self._running
        if running is not None and running.loop.error is not None:
            running.tagged.loop_failed(running.loop.error)
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
        running.tagged.ended(
            {
                "steps": loop.steps,
                "deadline_misses": loop.deadline_misses,
                "dropped_frames": loop.lag_dropped_frames + pacer.dropped_frames,
                "late_frames": pacer.late_frames,
                "client_frames": pacer.client_frames,
            }
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
