"""`kame bench frontend --batch N`: what N sessions in one batch cost, against one session alone.

The same model, in the same process, in alternating rounds: a `BatchedFrontend` of one slot, then
one of N slots with every slot taken (each session its own input and seed). The figure that matters
for serving is the step time at N over the step time at 1: near 1 while the step is bound by reading
the weights (a GPU at small N), near N once the arithmetic is.
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kame_cli.stats import percentile

if TYPE_CHECKING:
    from kame_cli.engine.loader import Frontend

TINY_RATIO_TARGET = 2.0
"""The CPU target for random:tiny at batch 4: a step of four sessions at most twice one's."""


@dataclass
class RealtimeResult:
    """N paced clients on a `BatchLoop` for a while: what each got, and what the process spent."""

    seconds: float
    ticks: int
    step_ms: list[float] = field(default_factory=list)
    late_frames: list[int] = field(default_factory=list)
    """Per client: steps on silence because its frame was not there at the tick (audio gaps in)."""
    dropped_frames: list[int] = field(default_factory=list)
    """Per client: frames dropped because the loop fell behind by more than its jitter allowance."""
    deadline_misses: int = 0
    cpu_pct: float = 0.0
    """The process's CPU time over the wall time, in % of one core."""

    @property
    def held(self) -> bool:
        return self.deadline_misses == 0 and not any(self.late_frames) and not any(self.dropped_frames)


@dataclass
class BatchBenchResult:
    """Per-step milliseconds at batch 1 and at batch N, from alternating rounds."""

    label: str
    batch: int
    single_ms: list[float] = field(default_factory=list)
    batch_ms: list[float] = field(default_factory=list)
    realtime: RealtimeResult | None = None

    @property
    def step_ratio_vs_b1(self) -> float:
        return percentile(self.batch_ms, 50) / percentile(self.single_ms, 50)

    @property
    def mean_ratio_vs_b1(self) -> float:
        return statistics.fmean(self.batch_ms) / statistics.fmean(self.single_ms)


def _round(frontend: Frontend, slots: int, steps: int, seed: int, warmup: int) -> list[float]:
    from kame_cli.bench.frontend import _frames
    from kame_cli.engine.batch import BatchedFrontend

    inputs = [_frames(steps, seed + slot) for slot in range(slots)]
    times: list[float] = []
    with BatchedFrontend(frontend, slots, warmup_steps=warmup) as batch:
        for slot in range(slots):
            batch.join(seed=seed + slot)
        for index in range(steps):
            frames = {slot: inputs[slot][index] for slot in range(slots)}
            started = time.perf_counter()
            batch.step(frames)
            times.append((time.perf_counter() - started) * 1000.0)
    return times[1:]  # the first step of a round pays for first-touch allocations


def run_batch_bench(
    frontend: Frontend, label: str, batch: int, steps: int, rounds: int, seed: int, warmup: int
) -> BatchBenchResult:
    """Alternate rounds at batch 1 and at `batch`, `steps // rounds` steps each, on one thread each."""
    result = BatchBenchResult(label, batch)
    per_round = max(3, steps // max(1, rounds))
    for index in range(max(1, rounds)):
        rounds_here = [(result.single_ms, 1), (result.batch_ms, batch)]
        for times, slots in rounds_here if index % 2 == 0 else reversed(rounds_here):
            times.extend(_on_thread(frontend, slots, per_round, seed, warmup))
    return result


def _on_thread(frontend: Frontend, slots: int, steps: int, seed: int, warmup: int) -> list[float]:
    """One round on a fresh thread, as a serving loop runs (torch's thread settings are per thread)."""
    import torch

    box: list[list[float]] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            if frontend.device.type == "cpu":
                torch.set_num_threads(frontend.cpu_threads)
            box.append(_round(frontend, slots, steps, seed, warmup))
        except Exception as err:  # re-raised on the caller's thread
            failure.append(err)

    thread = threading.Thread(target=target, name=f"kame-bench-batch{slots}")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return box[0]


def run_realtime(frontend: Frontend, batch: int, seconds: float, seed: int, warmup: int) -> RealtimeResult:
    """`batch` clients, each sending its frames on the 80 ms schedule, on one `BatchLoop`."""
    from kame_cli.bench.frontend import _frames
    from kame_cli.bus import EventBus
    from kame_cli.clock import FRAME_SECONDS, SessionClock
    from kame_cli.engine.batch_loop import BatchLoop
    from kame_cli.events import StepTiming

    count = max(2, int(seconds / FRAME_SECONDS))
    inputs = [_frames(count, seed + slot) for slot in range(batch)]
    loop = BatchLoop(frontend, batch, warmup_steps=warmup)
    loop.start()
    bus = EventBus()
    timings = bus.subscribe("bench", maxsize=0)
    # Each client's first frame goes with its join: one frame of slack, as a client's jitter buffer.
    sessions = [
        loop.open_session(
            bus if slot == 0 else EventBus(),
            SessionClock(),
            lambda index, pcm: None,
            seed=seed + slot,
            frames=(inputs[slot][0],),
        )
        for slot in range(batch)
    ]
    try:
        for session in sessions:
            session.joined.wait()
        late_before = [session.late_frames for session in sessions]
        cpu_start, wall_start = time.process_time(), time.monotonic()
        # The clients: one frame each per 80 ms on the absolute schedule, each a tick ahead of the
        # loop's (whose next tick comes less than 80 ms after the join).
        for tick in range(1, count):
            delay = wall_start + (tick - 1) * FRAME_SECONDS - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            for slot, session in enumerate(sessions):
                session.offer(inputs[slot][tick])
        cpu, wall = time.process_time() - cpu_start, time.monotonic() - wall_start
        late = [session.late_frames - before for session, before in zip(sessions, late_before, strict=True)]
    finally:
        loop.stop(timeout=5.0)
    if loop.error is not None:
        raise loop.error
    steps = [event.total_ms for event in timings.drain() if isinstance(event, StepTiming)]
    return RealtimeResult(
        seconds=wall,
        ticks=count,
        step_ms=steps,
        late_frames=late,
        dropped_frames=[session.dropped_frames for session in sessions],
        deadline_misses=sessions[0].deadline_misses,
        cpu_pct=100.0 * cpu / wall,
    )


def batch_figures(result: BatchBenchResult) -> dict[str, object]:
    """The figures as one JSON-ready object (`--json`)."""
    out: dict[str, object] = {"label": result.label, "batch": result.batch, "steps": len(result.batch_ms)}
    for name, values in (("b1", result.single_ms), (f"b{result.batch}", result.batch_ms)):
        for q in (50, 95, 99):
            out[f"{name}_p{q}_ms"] = round(percentile(values, q), 3)
    out["step_ratio_vs_b1"] = round(result.step_ratio_vs_b1, 3)
    out["mean_ratio_vs_b1"] = round(result.mean_ratio_vs_b1, 3)
    out["per_session_p50_ms"] = round(percentile(result.batch_ms, 50) / result.batch, 3)
    live = result.realtime
    if live is not None:
        out["realtime_seconds"] = round(live.seconds, 2)
        out["realtime_step_p99_ms"] = round(percentile(live.step_ms, 99), 3)
        out["realtime_deadline_misses"] = live.deadline_misses
        out["audio_gaps"] = sum(live.late_frames) + sum(live.dropped_frames)
        out["late_frames"] = live.late_frames
        out["dropped_frames"] = live.dropped_frames
        out["held_realtime"] = live.held
        out["cpu_per_session_pct"] = round(live.cpu_pct / result.batch, 1)
    return out


def batch_report(result: BatchBenchResult, model: str) -> str:
    """The figures, with the CPU target beside them for random:tiny at batch 4."""

    def row(name: str, values: list[float]) -> str:
        p50, p95, p99 = (percentile(values, q) for q in (50, 95, 99))
        mean = statistics.fmean(values)
        return f"  {name:<18}{p50:>9.2f}{p95:>9.2f}{p99:>9.2f}{mean:>9.2f}{len(values):>8}"

    ratio = result.step_ratio_vs_b1
    per_session = percentile(result.batch_ms, 50) / result.batch
    lines = [
        f"batched front-end bench: {result.label}",
        f"  {'ms per step':<18}{'p50':>9}{'p95':>9}{'p99':>9}{'mean':>9}{'steps':>8}",
        row("batch 1", result.single_ms),
        row(f"batch {result.batch}", result.batch_ms),
        f"  step at batch {result.batch} over batch 1: {ratio:.2f} (p50), "
        f"{result.mean_ratio_vs_b1:.2f} (mean); per session {per_session:.2f} ms (p50)",
    ]
    live = result.realtime
    if live is not None:
        gaps = sum(live.late_frames) + sum(live.dropped_frames)
        lines.append(
            f"  real time, {result.batch} paced clients for {live.seconds:.1f} s: step p99 "
            f"{percentile(live.step_ms, 99):.2f} ms, deadline misses {live.deadline_misses}, "
            f"audio gaps {gaps} (late {live.late_frames}, dropped {live.dropped_frames}): "
            f"{'held' if live.held else 'NOT held'}; CPU {live.cpu_pct:.0f} % of a core, "
            f"{live.cpu_pct / result.batch:.0f} % per session"
        )
    if model == "random:tiny" and result.batch == 4:
        verdict = "met" if ratio <= TINY_RATIO_TARGET else "MISSED"
        lines.append(f"  target <= {TINY_RATIO_TARGET:.1f} on CPU: {verdict}")
    return "\n".join(lines)
