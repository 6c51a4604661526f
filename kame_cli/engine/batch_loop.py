"""The batched front-end in real time: one thread steps every session together each 80 ms tick.

`BatchLoop` owns a `BatchedFrontend` on its own thread (moshi's streaming state has one owner).
Every tick, on the absolute schedule of this machine's clock, it applies the joins, leaves and
oracle commands that other threads queued, takes each session's oldest waiting frame (none: the
session steps on silence and the late frame is counted), steps the batch once, and hands each
session its output frame and events. A slow or silent client never delays the others: the tick
does not wait for frames. Each session's events (`OracleFed`, `FrontendText`, `StepTiming`,
`DeadlineMiss`) are the single-session loop's, on its own sink and clock.
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from kame_cli.bus import EventSink
from kame_cli.clock import FRAME_SAMPLES, FRAME_SECONDS, SessionClock
from kame_cli.engine.batch import WARMUP_STEPS, BatchedFrontend, SlotOutput, SlotsFull
from kame_cli.engine.loader import Frontend, Sampling
from kame_cli.engine.loop import WarmThread
from kame_cli.events import DeadlineMiss, FrontendText, OracleCommand, OracleFed, StepTiming
from kame_cli.queues import drain

JITTER_FRAMES = 3
"""Client frames a session may hold ahead of the tick (240 ms); beyond, the oldest is dropped."""


class BatchSession:
    """One conversation in a `BatchLoop`: offer frames and oracle commands from any thread."""

    def __init__(
        self,
        loop: BatchLoop,
        events: EventSink,
        clock: SessionClock,
        on_output: Callable[[int, np.ndarray], None],
        seed: int | None,
    ) -> None:
        self.events = events
        self.clock = clock
        self.on_output = on_output
        self.seed = seed
        self.slot: int | None = None
        """The batch row, once the loop has joined the session."""
        self.steps = 0
        self.late_frames = 0
        """Ticks with no frame from the client: the session stepped on silence."""
        self.dropped_frames = 0
        """Frames dropped because `jitter_frames` already waited."""
        self.deadline_misses = 0
        self.client_frames = 0
        """Frames offered, kept or dropped."""
        self.joined = threading.Event()
        self.ended = threading.Event()
        self._loop = loop
        self._frames: collections.deque[np.ndarray] = collections.deque()
        self._lock = threading.Lock()

    def offer(self, pcm: np.ndarray) -> None:
        """Queue one 1920-sample frame for the next free tick; never blocks."""
        frame = np.array(pcm, dtype=np.float32, copy=True).reshape(-1)
        if frame.size != FRAME_SAMPLES:
            raise ValueError(f"a frame is {FRAME_SAMPLES} samples, got {frame.size}")
        with self._lock:
            self.client_frames += 1
            self._frames.append(frame)
            while len(self._frames) > self._loop.jitter_frames:
                self._frames.popleft()
                self.dropped_frames += 1

    def send_oracle(self, command: OracleCommand) -> None:
        """An oracle reset/append/clear, applied to this session's row before its next step."""
        self._loop._control.put((self, command))

    def leave(self) -> None:
        """End the session: its slot is free from the next tick."""
        self._loop._control.put((self, None))

    def summary(self) -> dict[str, int]:
        """The session's counts, as a single-session host reports them when a session ends."""
        return {
            "steps": self.steps,
            "deadline_misses": self.deadline_misses,
            "dropped_frames": self.dropped_frames,
            "late_frames": self.late_frames,
            "client_frames": self.client_frames,
        }

    @property
    def waiting(self) -> int:
        """Frames offered and not yet stepped: this session's lag, in frames."""
        with self._lock:
            return len(self._frames)

    def _take(self) -> np.ndarray | None:
        with self._lock:
            return self._frames.popleft() if self._frames else None


@dataclass(frozen=True, slots=True)
class _Join:
    session: BatchSession
    oracle: tuple[OracleCommand, ...]


class BatchLoop(WarmThread):
    """Steps up to `slots` sessions of one front-end together, every `frame_seconds`."""

    _thread_name = "kame-frontend-batch"

    def __init__(
        self,
        frontend: Frontend,
        slots: int,
        *,
        sampling: Sampling | None = None,
        budget_ms: float = FRAME_SECONDS * 1000.0,
        warmup_steps: int = WARMUP_STEPS,
        jitter_frames: int = JITTER_FRAMES,
        frame_seconds: float = FRAME_SECONDS,
    ) -> None:
        self.frontend = frontend
        self.slots = slots
        self.budget_ms = budget_ms
        self.jitter_frames = max(1, jitter_frames)
        self.frame_seconds = frame_seconds
        self.batch = BatchedFrontend(frontend, slots, sampling=sampling, warmup_steps=warmup_steps)
        self.ticks = 0
        self.error: BaseException | None = None
        self._control: queue.SimpleQueue[tuple[BatchSession, OracleCommand | None] | _Join] = (
            queue.SimpleQueue()
        )
        self._sessions: dict[int, BatchSession] = {}
        self._reserved = 0
        self._reserve_lock = threading.Lock()
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._ended = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def taken(self) -> int:
        """Slots held by sessions, joined or about to be."""
        return self._reserved

    def start(self) -> None:
        """Start the thread; returns once the batch is warm (its CUDA graphs captured at `slots`)."""
        hint = "try fewer sessions (--max-sessions) or a smaller model"
        self._start_warm("batched front-end", self.frontend.device, hint)

    def open_session(
        self,
        events: EventSink,
        clock: SessionClock,
        on_output: Callable[[int, np.ndarray], None],
        *,
        seed: int | None = None,
        frames: tuple[np.ndarray, ...] = (),
        oracle: tuple[OracleCommand, ...] = (),
    ) -> BatchSession:
        """Reserve a slot (`SlotsFull` when none is left) and join at the next tick.

        `frames` and `oracle` commands are queued before the join: the session's first step has them."""
        session = BatchSession(self, events, clock, on_output, seed)
        for frame in frames:
            session.offer(frame)
        # Under the lock the thread ends under: a join is either queued before it drains the
        # queue, or refused here; none waits for a loop that is gone.
        with self._reserve_lock:
            if self._ended.is_set():
                raise RuntimeError("the batched front-end has stopped: no new session can join")
            if self._reserved >= self.slots:
                raise SlotsFull(f"all {self.slots} front-end slots are taken")
            self._reserved += 1
            self._control.put(_Join(session, oracle))
        return session

    def stop(self, timeout: float = 1.0) -> bool:
        """Stop after the current tick; True when the thread has ended."""
        self._stopping.set()
        return self.join(timeout)

    # --- the real-time thread --------------------------------------------------------------------

    def _run(self) -> None:
        import torch

        try:
            if self.frontend.device.type == "cpu":
                torch.set_num_threads(self.frontend.cpu_threads)
            with self.batch:
                self._ready.set()
                self._serve()
        except Exception as err:  # a CUDA OOM, a bad frame: every session ends, the host reports it
            self.error = err
        finally:
            with self._reserve_lock:
                self._ended.set()
            for session in list(self._sessions.values()):
                session.ended.set()
            self._end_pending()
            self._ready.set()

    def _end_pending(self) -> None:
        # Joins queued when the thread ended: those sessions end without a step.
        for item in drain(self._control):
            if isinstance(item, _Join):
                item.session.ended.set()

    def _serve(self) -> None:
        start = time.monotonic()
        while not self._stopping.is_set():
            self._apply_control()
            if self._sessions:
                self._tick()
            self.ticks += 1
            # The absolute schedule: a late tick is made up for, not carried forward.
            delay = start + self.ticks * self.frame_seconds - time.monotonic()
            if delay > 0:
                self._stopping.wait(delay)

    def _apply_control(self) -> None:
        for item in drain(self._control):
            if isinstance(item, _Join):
                session = item.session
                session.slot = self.batch.join(seed=session.seed)
                self._sessions[session.slot] = session
                for queued in item.oracle:
                    self.batch.send_oracle(session.slot, queued)
                session.joined.set()
                continue
            session, command = item
            if session.slot is None or self._sessions.get(session.slot) is not session:
                continue  # a session that already left
            if command is None:
                self.batch.leave(session.slot)
                del self._sessions[session.slot]
                with self._reserve_lock:
                    self._reserved -= 1
                session.ended.set()
            else:
                self.batch.send_oracle(session.slot, command)

    def _tick(self) -> None:
        frames: dict[int, np.ndarray | None] = {}
        lag_ms: dict[int, float] = {}
        for slot, session in self._sessions.items():
            frames[slot] = session._take()
            lag_ms[slot] = session.waiting * self.frame_seconds * 1000.0
        started = time.perf_counter()
        outputs = self.batch.step(frames)
        total_ms = (time.perf_counter() - started) * 1000.0
        for slot, out in outputs.items():
            self._deliver(self._sessions[slot], out, total_ms, lag_ms[slot])

    def _deliver(self, session: BatchSession, out: SlotOutput, total_ms: float, lag_ms: float) -> None:
        session.steps = out.step + 1
        if out.late:
            session.late_frames += 1
        session.on_output(out.step, out.pcm)
        now = session.clock.now()
        publish = session.events.publish
        if out.oracle_token != self.frontend.text_padding_id:
            publish(OracleFed(now, out.step, out.oracle_token, self.batch.oracle_stream(out.slot).pending))
        if out.text_token is not None:
            piece = self.frontend.text_piece(out.text_token)
            if piece:
                publish(FrontendText(now, out.step, piece))
        # One step serves every session: its time and stages are each session's.
        encode_ms, lm_ms, decode_ms = self.batch.last_stages_ms
        publish(StepTiming(now, out.step, encode_ms, lm_ms, decode_ms, total_ms, lag_ms))
        if total_ms > self.budget_ms:
            session.deadline_misses += 1
            publish(DeadlineMiss(now, out.step, total_ms, self.budget_ms))
