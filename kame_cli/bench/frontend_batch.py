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
class BatchBenchResult:
    """Per-step milliseconds at batch 1 and at batch N, from alternating rounds."""

    label: str
    batch: int
    single_ms: list[float] = field(default_factory=list)
    batch_ms: list[float] = field(default_factory=list)

    @property
    def step_ratio_vs_b1(self) -> float:
        return statistics.median(self.batch_ms) / statistics.median(self.single_ms)

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
        order = (1, batch) if index % 2 == 0 else (batch, 1)
        for slots in order:
            times = _on_thread(frontend, slots, per_round, seed, warmup)
            (result.single_ms if slots == 1 else result.batch_ms).extend(times)
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


def batch_figures(result: BatchBenchResult) -> dict[str, object]:
    """The figures as one JSON-ready object (`--json`)."""
    out: dict[str, object] = {"label": result.label, "batch": result.batch, "steps": len(result.batch_ms)}
    for name, values in (("b1", result.single_ms), (f"b{result.batch}", result.batch_ms)):
        for q in (50, 95, 99):
            out[f"{name}_p{q}_ms"] = round(percentile(values, q), 3)
    out["step_ratio_vs_b1"] = round(result.step_ratio_vs_b1, 3)
    out["mean_ratio_vs_b1"] = round(result.mean_ratio_vs_b1, 3)
    out["per_session_p50_ms"] = round(statistics.median(result.batch_ms) / result.batch, 3)
    return out


def batch_report(result: BatchBenchResult, model: str) -> str:
    """The figures, with the CPU target beside them for random:tiny at batch 4."""

    def row(name: str, values: list[float]) -> str:
        p50, p95, p99 = (percentile(values, q) for q in (50, 95, 99))
        mean = statistics.fmean(values)
        return f"  {name:<18}{p50:>9.2f}{p95:>9.2f}{p99:>9.2f}{mean:>9.2f}{len(values):>8}"

    ratio = result.step_ratio_vs_b1
    per_session = statistics.median(result.batch_ms) / result.batch
    lines = [
        f"batched front-end bench: {result.label}",
        f"  {'ms per step':<18}{'p50':>9}{'p95':>9}{'p99':>9}{'mean':>9}{'steps':>8}",
        row("batch 1", result.single_ms),
        row(f"batch {result.batch}", result.batch_ms),
        f"  step at batch {result.batch} over batch 1: {ratio:.2f} (p50), "
        f"{result.mean_ratio_vs_b1:.2f} (mean); per session {per_session:.2f} ms (p50)",
    ]
    if model == "random:tiny" and result.batch == 4:
        verdict = "met" if ratio <= TINY_RATIO_TARGET else "MISSED"
        lines.append(f"  target <= {TINY_RATIO_TARGET:.1f} on CPU: {verdict}")
    return "\n".join(lines)
