"""The front-end's real-time loop: one thread that alone owns the model and its streaming state.

Per 80 ms frame: drain oracle commands -> Mimi encode -> LM step with this step's oracle token ->
Mimi decode -> `on_output(step, pcm)`, then events (text pieces, timings, deadline misses).
Pacing is the source's job: frames arrive in real time from a microphone or a paced file, or as
fast as the loop takes them. The loop never waits on the back-end, only on its next frame.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from kame_cli.bus import EventSink
from kame_cli.clock import FRAME_SAMPLES, SessionClock
from kame_cli.engine.loader import Frontend, Sampling
from kame_cli.engine.oracle import OracleStream
from kame_cli.errors import DeviceError, KameError
from kame_cli.events import (
    BackendStatus,
    DeadlineMiss,
    FramesDropped,
    FrontendText,
    OracleAppend,
    OracleCommand,
    OracleFed,
    StepTiming,
)

if TYPE_CHECKING:
    import sentencepiece
    from moshi.models.lm import LMGen

WARMUP_STEPS = 4
"""Enough for moshi's CUDA graphs (one plain call, then capture) and torch.compile to settle."""
DIAGNOSTIC_STEPS = 3000
"""Per-step records kept in memory (4 minutes): a ring, so a long session's memory stays flat."""
_CAUGHT_UP_STEPS = 25
"""Steps with no backlog (2 s) after which a lagging loop reports itself `ok` again."""
ORACLE_QUEUE_APPENDS = 64
"""Oracle appends that may wait for the loop (the reference's bound); more are dropped and counted.
Resets and clears are never dropped: the producer sends at most a few per second."""


class WarmThread:
    """The one thread a real-time loop steps on: `_start_warm` returns once `_run` has set `_ready`
    (warm, or failed with `error` set), and raises the one-line warm-up error in the caller."""

    _thread_name = "kame-frontend"
    error: BaseException | None
    _ready: threading.Event
    _thread: threading.Thread | None

    def _run(self) -> None:
        raise NotImplementedError

    def _start_warm(self, what: str, device: object, hint: str) -> None:
        if self._thread is not None:
            raise RuntimeError(f"{type(self).__name__}.start() called twice")
        self._thread = threading.Thread(target=self._run, name=self._thread_name, daemon=False)
        self._thread.start()
        self._ready.wait()
        if self.error is not None:
            self._thread.join()
            raise warmup_failure(self.error, what, device, hint)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread to end; True when it has (or it never started)."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()


class FrontendLoop(WarmThread):
    """Steps the front-end on its own thread; `submit_frame` and `send_oracle` are safe from any thread."""

    def __init__(
        self,
        frontend: Frontend,
        events: EventSink,
        clock: SessionClock,
        *,
        on_output: Callable[[int, np.ndarray], None],
        budget_ms: float = 80.0,
        seed: int | None = None,
        sampling: Sampling | None = None,
        warmup_steps: int = WARMUP_STEPS,
        max_lag_ms: float | None = None,
        step_delay_ms: float = 0.0,
    ) -> None:
        """`on_output(index, pcm)` gets the output for input frame `index` (frames dropped by the lag
        bound leave gaps). `max_lag_ms` bounds the backlog of a live source (None: lossless);
        `step_delay_ms` slows every step down on purpose (`kame talk --debug-step-delay-ms`)."""
        self.frontend = frontend
        self.budget_ms = budget_ms
        self.seed = seed
        self.sampling = sampling or Sampling()
        self.warmup_steps = warmup_steps
        self._events = events
        self._clock = clock
        self._on_output = on_output
        self._frames: queue.SimpleQueue[np.ndarray | None] = queue.SimpleQueue()
        self._taken = 0
        """Frames taken from the queue, stepped or dropped: the input index of the next one."""
        frame_ms = FRAME_SAMPLES / frontend.sample_rate * 1000.0
        self._frame_ms = frame_ms
        self._max_lag_ms = max_lag_ms
        self._max_backlog = None if max_lag_ms is None else max(0, int(max_lag_ms // frame_ms))
        self._step_delay_s = max(0.0, step_delay_ms) / 1000.0
        self._commands: queue.SimpleQueue[OracleCommand] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._oracle = OracleStream(frontend.text_start_id, frontend.text_padding_id)
        self.steps = 0
        self._fed: deque[int] = deque(maxlen=DIAGNOSTIC_STEPS)
        self._text: deque[int | None] = deque(maxlen=DIAGNOSTIC_STEPS)
        self.deadline_misses = 0
        self.lag_dropped_frames = 0
        """Live input frames dropped by the lag bound (the oldest first)."""
        self._lagging = False
        self._steps_without_backlog = 0
        self.dropped_oracle_appends = 0
        """Oracle appends dropped because `ORACLE_QUEUE_APPENDS` were already waiting."""
        self.dropped_frames = 0
        """Frames never stepped that the lag bound did not drop: still queued when the loop was stopped
        (or failed), or submitted after its thread had ended."""
        self.error: BaseException | None = None
        self._ended = threading.Event()

    @property
    def text_tokenizer(self) -> sentencepiece.SentencePieceProcessor:
        return self.frontend.text_tokenizer

    @property
    def fed_oracle_tokens(self) -> list[int]:
        """The oracle token fed at each of the last `DIAGNOSTIC_STEPS` steps (padding included)."""
        return list(self._fed)

    @property
    def text_tokens(self) -> list[int | None]:
        """The inner-monologue token sampled at each of the last `DIAGNOSTIC_STEPS` steps; None
        while moshi's delays fill up."""
        return list(self._text)

    @property
    def backlog(self) -> int:
        """Frames submitted and not yet stepped."""
        return self._frames.qsize()

    # --- other threads ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the thread and return once warm-up is done (before the first real frame is stepped)."""
        self._start_warm("front-end", self.frontend.device, "try --device cpu or a smaller model")

    def submit_frame(self, pcm: np.ndarray) -> None:
        """Queue one 1920-sample float32 mono frame at 24 kHz; copies it, never blocks.

        Once the thread has ended (see `error`) frames are dropped and counted, so a source that
        goes on feeding a dead loop does not grow the queue without bound.
        """
        frame = np.array(pcm, dtype=np.float32, copy=True)
        if frame.size != FRAME_SAMPLES:
            raise ValueError(f"submit_frame expects {FRAME_SAMPLES} samples, got {frame.size}")
        if self._ended.is_set():
            self.dropped_frames += 1
            return
        self._frames.put(frame.reshape(FRAME_SAMPLES))

    def end_input(self) -> None:
        """No more frames: the loop steps those already queued, then ends."""
        self._frames.put(None)

    def send_oracle(self, command: OracleCommand) -> None:
        """Queue an oracle reset/append/clear; the loop applies it before its next step.

        Bounded like the reference server's queue: with `ORACLE_QUEUE_APPENDS` commands waiting (a
        stalled loop, or an LLM far faster than the voice), a further append is dropped and counted.
        """
        if isinstance(command, OracleAppend) and self._commands.qsize() >= ORACLE_QUEUE_APPENDS:
            self.dropped_oracle_appends += 1
            return
        self._commands.put(command)

    def stop(self, timeout: float = 1.0) -> bool:
        """Stop after the current step (queued frames are dropped); True when the thread has ended."""
        self._stopping.set()
        self._frames.put(None)
        return self.join(timeout)

    # --- the real-time thread --------------------------------------------------------------------

    def _run(self) -> None:
        import torch

        frontend = self.frontend
        try:
            if frontend.device.type == "cpu":
                torch.set_num_threads(frontend.cpu_threads)
            lm_gen = frontend.make_lm_gen(self.sampling)
            # Inference mode, not no_grad: no version counters or view tracking on any tensor, about
            # 1 ms (a tenth) less per step of random:tiny on a CPU; the tokens are the same.
            with (
                torch.inference_mode(),
                frontend.step_context(),
                frontend.mimi.streaming(1),
                lm_gen.streaming(1),
            ):
                self._warm_up(lm_gen)
                # Every session starts from fresh streaming state, whatever warm-up left behind.
                frontend.mimi.reset_streaming()
                lm_gen.reset_streaming()
                if self.seed is not None:
                    torch.manual_seed(self.seed)
                self._publish_status("ok", f"{frontend.name} ready on {frontend.device}")
                self._ready.set()
                self._serve(lm_gen)
        except Exception as err:  # any failure (CUDA OOM, a bad frame) must reach start()/the panel
            self.error = err
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            self._publish_status("error", f"front-end stopped: {type(err).__name__}: {first}")
        finally:
            self._ended.set()
            self._drop_backlog()
            self._ready.set()

    def _drop_backlog(self) -> None:
        # Frames nobody will step: free them now rather than when the loop object goes, and count them.
        while True:
            try:
                item = self._frames.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                self.dropped_frames += 1

    def _warm_up(self, lm_gen: LMGen) -> None:
        import torch

        silence = torch.zeros(1, 1, FRAME_SAMPLES, device=self.frontend.device)
        for _ in range(self.warmup_steps):
            self.frontend.lm.set_oracle_token(self.frontend.text_padding_id)
            tokens = lm_gen.step(self.frontend.mimi.encode(silence))
            if tokens is not None:
                self.frontend.mimi.decode(tokens[:, 1:]).cpu()

    def _serve(self, lm_gen: LMGen) -> None:
        import torch

        device = self.frontend.device
        timer = _CudaStageTimer() if device.type == "cuda" else _WallStageTimer()
        while not self._stopping.is_set():
            frame = self._next_frame()
            if frame is None or self._stopping.is_set():
                if frame is not None:
                    self.dropped_frames += 1  # taken, but the stop came first
                return
            index = self._taken - 1
            step = self.steps
            lag_ms = self._frames.qsize() * self._frame_ms
            started = time.perf_counter()
            token = self._next_oracle_token()
            timer.begin()
            codes = self.frontend.mimi.encode(torch.from_numpy(frame).to(device)[None, None])
            if step == 0:
                # As both reference servers do: the first frame's code carries the encoder's left
                # padding; resetting Mimi's streaming state makes the next frame reapply it.
                self.frontend.mimi.reset_streaming()
            timer.mark()
            tokens = lm_gen.step(codes)
            text_token: int | None = None
            out = np.zeros(FRAME_SAMPLES, dtype=np.float32)  # silence while moshi's delays fill up
            if tokens is not None:
                text_token = int(tokens[0, 0, 0].item())
                timer.mark()
                pcm = self.frontend.mimi.decode(tokens[:, 1:])
                out = pcm[0, 0].to(torch.float32).cpu().numpy()
            else:
                timer.mark()
            timer.mark()
            if self._step_delay_s:
                time.sleep(self._step_delay_s)  # debug: a slow device, on purpose (tests, demos)
            total_ms = (time.perf_counter() - started) * 1000.0
            self._fed.append(token)
            self._text.append(text_token)
            self.steps = step + 1
            self._on_output(index, out)
            self._publish_step(step, token, text_token, timer.stages_ms(), total_ms, lag_ms)

    def _next_frame(self) -> np.ndarray | None:
        """The next frame to step; with a lag bound, the oldest frames beyond it are dropped first."""
        item = self._frames.get()
        self._taken += 1
        limit = self._max_backlog
        if limit is None or item is None:
            return item
        waiting = self._frames.qsize()
        if waiting <= limit:
            self._note_caught_up(waiting)
            return item
        lag_ms = waiting * self._frame_ms
        dropped = 0
        while item is not None and self._frames.qsize() > limit:
            dropped += 1
            item = self._frames.get_nowait()
            self._taken += 1
        self.lag_dropped_frames += dropped
        self._steps_without_backlog = 0
        self._events.publish(
            FramesDropped(self._clock.now(), self.steps, dropped, self.lag_dropped_frames, lag_ms)
        )
        if not self._lagging:
            self._lagging = True
            self._publish_status(
                "degraded",
                f"falling behind: dropping the oldest frames (lag {lag_ms:.0f} ms > max_lag_ms "
                f"{self._max_lag_ms:.0f})",
            )
        return item

    def _note_caught_up(self, waiting: int) -> None:
        if not self._lagging:
            return
        self._steps_without_backlog = self._steps_without_backlog + 1 if waiting == 0 else 0
        if self._steps_without_backlog >= _CAUGHT_UP_STEPS:
            self._lagging = False
            self._publish_status("ok", f"caught up ({self.lag_dropped_frames} frames dropped in all)")

    def _next_oracle_token(self) -> int:
        while True:
            try:
                self._oracle.apply(self._commands.get_nowait())
            except queue.Empty:
                break
        token = self._oracle.next_token()
        self.frontend.lm.set_oracle_token(token)
        return token

    def _publish_step(
        self,
        step: int,
        oracle_token: int,
        text_token: int | None,
        stages: tuple[float, float, float],
        total: float,
        lag_ms: float = 0.0,
    ) -> None:
        now = self._clock.now()
        publish = self._events.publish
        if oracle_token != self.frontend.text_padding_id:
            publish(OracleFed(now, step, oracle_token, self._oracle.pending))
        if text_token is not None:
            piece = self.frontend.text_piece(text_token)
            if piece:
                publish(FrontendText(now, step, piece))
        publish(StepTiming(now, step, stages[0], stages[1], stages[2], total, lag_ms))
        if total > self.budget_ms:
            self.deadline_misses += 1
            publish(DeadlineMiss(now, step, total, self.budget_ms))

    def _publish_status(self, state: str, message: str) -> None:
        self._events.publish(BackendStatus(self._clock.now(), "frontend", state, message))  # type: ignore[arg-type]


class _WallStageTimer:
    """Stage times on the CPU: the work is synchronous, so wall-clock marks are exact."""

    def __init__(self) -> None:
        self._marks: list[float] = []

    def begin(self) -> None:
        self._marks = [time.perf_counter()]

    def mark(self) -> None:
        self._marks.append(time.perf_counter())

    def stages_ms(self) -> tuple[float, float, float]:
        m = self._marks
        return ((m[1] - m[0]) * 1e3, (m[2] - m[1]) * 1e3, (m[3] - m[2]) * 1e3)


class _CudaStageTimer:
    """Stage times on the GPU from CUDA events: no extra synchronization in the step."""

    def __init__(self) -> None:
        import torch

        self._events = [torch.cuda.Event(enable_timing=True) for _ in range(4)]
        self._count = 0

    def begin(self) -> None:
        self._count = 0
        self.mark()

    def mark(self) -> None:
        self._events[self._count].record()
        self._count += 1

    def stages_ms(self) -> tuple[float, float, float]:
        e = self._events
        e[3].synchronize()  # already reached: the step copied its output to the host
        return (e[0].elapsed_time(e[1]), e[1].elapsed_time(e[2]), e[2].elapsed_time(e[3]))


def warmup_failure(error: BaseException, what: str, device: object, hint: str) -> KameError:
    """The one-line error a loop's start raises when its thread failed while warming up."""
    if isinstance(error, KameError):
        return error
    first = str(error).splitlines()[0] if str(error) else type(error).__name__
    failure = DeviceError(f"{what} warm-up failed on {device} ({type(error).__name__}: {first}): {hint}")
    failure.__cause__ = error
    return failure
