"""`kame bench frontend`: per-step latency of the front-end loop, against a bare moshi loop.

Both run the same model in the same process, in alternating rounds (so drift and other load on the
machine hit both alike). The bare loop is what a minimal moshi program does per frame, under
`torch.no_grad()` as moshi's server steps: Mimi encode, `LMGen.step`, Mimi decode, copy to the
host. The engine figure is the time between consecutive output frames of a `FrontendLoop` fed a full
queue: everything it adds (oracle stream, events, timing, the output callback, queue hand-offs) is
inside it.
"""

from __future__ import annotations

import itertools
import json
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import typer

from kame_cli.stats import percentile

if TYPE_CHECKING:
    import numpy as np

    from kame_cli.engine.loader import Frontend

OVERHEAD_TARGET_PCT = 3.0
TINY_P99_TARGET_MS = 80.0
FULL_P99_TARGET_MS = 40.0


@dataclass
class FrontendBenchResult:
    """Per-step milliseconds of both loops, and the engine's stage split."""

    label: str
    bare_ms: list[float] = field(default_factory=list)
    engine_ms: list[float] = field(default_factory=list)
    encode_ms: list[float] = field(default_factory=list)
    lm_ms: list[float] = field(default_factory=list)
    decode_ms: list[float] = field(default_factory=list)
    step_total_ms: list[float] = field(default_factory=list)
    """The engine's own per-step total (its StepTiming events): the interval minus what lies between steps."""
    deadline_misses: int = 0

    @property
    def overhead_pct(self) -> float:
        return (statistics.fmean(self.engine_ms) / statistics.fmean(self.bare_ms) - 1.0) * 100.0

    @property
    def overhead_p50_pct(self) -> float:
        return (statistics.median(self.engine_ms) / statistics.median(self.bare_ms) - 1.0) * 100.0


def _frames(count: int, seed: int) -> list[np.ndarray]:
    import numpy as np

    rng = np.random.default_rng(seed)
    t = np.arange(1920) / 24_000
    frames = []
    for i in range(count):
        tone = 0.2 * np.sin(2 * np.pi * (150 + 5 * (i % 40)) * t)
        frames.append((tone + 0.02 * rng.standard_normal(1920)).astype(np.float32))
    return frames


def _bare_round(frontend: Frontend, frames: list[np.ndarray], seed: int, warmup: int) -> list[float]:
    import torch

    from kame_cli.engine.loader import Sampling

    mimi, device = frontend.mimi, frontend.device
    lm_gen = frontend.make_lm_gen(Sampling())
    times: list[float] = []
    with torch.no_grad(), frontend.step_context(), mimi.streaming(1), lm_gen.streaming(1):
        silence = torch.zeros(1, 1, 1920, device=device)
        for _ in range(warmup):
            tokens = lm_gen.step(mimi.encode(silence))
            if tokens is not None:
                mimi.decode(tokens[:, 1:]).cpu()
        mimi.reset_streaming()
        lm_gen.reset_streaming()
        torch.manual_seed(seed)
        for frame in frames:
            started = time.perf_counter()
            tokens = lm_gen.step(mimi.encode(torch.from_numpy(frame).to(device)[None, None]))
            if tokens is not None:
                tokens[0, 0, 0].item()
                mimi.decode(tokens[:, 1:])[0, 0].float().cpu().numpy()
            times.append((time.perf_counter() - started) * 1000.0)
    return times


def _engine_round(
    frontend: Frontend, frames: list[np.ndarray], seed: int, warmup: int, result: FrontendBenchResult
) -> list[float]:
    from kame_cli.bus import EventBus
    from kame_cli.clock import SessionClock
    from kame_cli.engine.loop import FrontendLoop
    from kame_cli.events import StepTiming

    bus = EventBus()
    panel = bus.subscribe("panel", maxsize=4096)  # a consumer, as in a live session
    stamps: list[float] = []
    loop = FrontendLoop(
        frontend,
        bus,
        SessionClock(),
        on_output=lambda step, pcm: stamps.append(time.perf_counter()),
        seed=seed,
        warmup_steps=warmup,
    )
    # Queued before start: the loop runs back to back from its first step, as when it lags a source.
    for frame in frames:
        loop.submit_frame(frame)
    loop.end_input()
    loop.start()
    loop.join()
    if loop.error is not None:
        raise loop.error
    for event in panel.drain():
        if isinstance(event, StepTiming):
            result.encode_ms.append(event.encode_ms)
            result.lm_ms.append(event.lm_ms)
            result.decode_ms.append(event.decode_ms)
            result.step_total_ms.append(event.total_ms)
    result.deadline_misses += loop.deadline_misses
    return [(b - a) * 1000.0 for a, b in itertools.pairwise(stamps)]


def _in_thread(work: Callable[[], list[float]]) -> list[float]:
    """Run `work` on a fresh thread, as the engine runs: both loops get the same kind of scheduling."""
    box: list[list[float]] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            box.append(work())
        except Exception as err:  # re-raised on the caller's thread
            failure.append(err)

    thread = threading.Thread(target=target, name="kame-bench-bare")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return box[0]


@dataclass(frozen=True, slots=True)
class BenchSetup:
    """What `kame bench frontend` loads and how it steps it (the command's defaults)."""

    model: str = "random:tiny"
    steps: int = 600
    device: str = "auto"
    rounds: int = 6
    half: bool = False
    seed: int = 0
    cpu_threads: int = 1
    warmup: int = 4
    quantize: str = "none"


def run_frontend_bench(setup: BenchSetup) -> FrontendBenchResult:
    """Load the model, then alternate bare and engine rounds of `steps // rounds` steps each."""
    frontend, label = load_for_bench(setup)
    result = FrontendBenchResult(label)
    seed, warmup = setup.seed, setup.warmup
    frames = _frames(max(2, setup.steps // max(1, setup.rounds)), seed)
    for index in range(max(1, setup.rounds)):
        # Swap the order every round so that drift (clocks, other load) favours neither loop.
        order = ("bare", "engine") if index % 2 == 0 else ("engine", "bare")
        for which in order:
            if which == "bare":
                result.bare_ms.extend(_in_thread(lambda: _bare_round(frontend, frames, seed, warmup))[1:])
            else:
                result.engine_ms.extend(_engine_round(frontend, frames, seed, warmup, result))
    return result


def load_for_bench(setup: BenchSetup) -> tuple[Frontend, str]:
    """The front-end and the label that names it, its device, dtype, torch and load time."""
    import torch

    from kame_cli.engine.config import FrontendConfig
    from kame_cli.engine.loader import load_frontend
    from kame_cli.settings import override

    started = time.perf_counter()
    flags = {f: getattr(setup, f) for f in ("model", "device", "half", "cpu_threads", "quantize")}
    cfg = override(FrontendConfig(), flags)
    frontend = load_frontend(cfg)
    if frontend.device.type == "cpu":
        torch.set_num_threads(setup.cpu_threads)
    load_s = time.perf_counter() - started
    label = (
        f"{setup.model} on {_device_name(frontend.device)} ({str(frontend.dtype).removeprefix('torch.')}"
        f"{', int8 linears' if frontend.quantized else ''}), "
        f"torch {torch.__version__}, loaded in {load_s:.1f} s"
    )
    return frontend, label


def _batch_command(setup: BenchSetup, batch: int, realtime: float, as_json: bool) -> None:
    from kame_cli.bench.frontend_batch import batch_figures, batch_report, run_batch_bench, run_realtime

    frontend, label = load_for_bench(setup)
    seed, warmup = setup.seed, setup.warmup
    result = run_batch_bench(frontend, label, batch, setup.steps, setup.rounds, seed, warmup)
    if realtime > 0:
        result.realtime = run_realtime(frontend, batch, realtime, seed, warmup)
    typer.echo(batch_report(result, setup.model), err=as_json)
    if as_json:
        typer.echo(json.dumps(batch_figures(result)))


def _device_name(device: object) -> str:
    import torch

    if isinstance(device, torch.device) and device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} torch thread(s))"


def figures(result: FrontendBenchResult) -> dict[str, object]:
    """The figures as one JSON-ready object (`--json`)."""
    out: dict[str, object] = {"label": result.label, "steps": len(result.engine_ms)}
    for name, values in (("bare", result.bare_ms), ("engine", result.engine_ms)):
        for q in (50, 95, 99):
            out[f"{name}_p{q}_ms"] = round(percentile(values, q), 3)
    for name, values in (("encode", result.encode_ms), ("lm", result.lm_ms), ("decode", result.decode_ms)):
        out[f"{name}_p50_ms"] = round(statistics.median(values), 3)
    out["overhead_pct"] = round(result.overhead_pct, 2)
    out["overhead_p50_pct"] = round(result.overhead_p50_pct, 2)
    out["deadline_misses"] = result.deadline_misses
    return out


def report(result: FrontendBenchResult, model: str) -> str:
    """The figures, with the targets beside them."""

    def row(name: str, values: list[float]) -> str:
        p50, p95, p99 = (percentile(values, q) for q in (50, 95, 99))
        return (
            f"  {name:<18}{p50:>9.2f}{p95:>9.2f}{p99:>9.2f}{statistics.fmean(values):>9.2f}{len(values):>8}"
        )

    engine_p99 = percentile(result.engine_ms, 99)
    lines = [
        f"front-end bench: {result.label}",
        f"  {'ms per step':<18}{'p50':>9}{'p95':>9}{'p99':>9}{'mean':>9}{'steps':>8}",
        row("bare moshi loop", result.bare_ms),
        row("kame engine", result.engine_ms),
        f"  engine stages p50: encode {statistics.median(result.encode_ms):.2f}, "
        f"LM {statistics.median(result.lm_ms):.2f}, decode {statistics.median(result.decode_ms):.2f}, "
        f"in-step total {statistics.median(result.step_total_ms):.2f} ms; "
        f"deadline misses (> 80 ms): {result.deadline_misses}",
        f"  engine overhead: {result.overhead_pct:+.1f} % (mean), {result.overhead_p50_pct:+.1f} % (p50)"
        f"   target <= {OVERHEAD_TARGET_PCT:.0f} %",
    ]
    if model == "random:tiny":
        verdict = "met" if engine_p99 < TINY_P99_TARGET_MS else "MISSED"
        lines.append(
            f"  engine p99 {engine_p99:.2f} ms   target < {TINY_P99_TARGET_MS:.0f} ms on CPU: {verdict}"
        )
    elif model == "random:7b":
        verdict = "met" if engine_p99 <= FULL_P99_TARGET_MS else "MISSED"
        lines.append(
            f"  engine p99 {engine_p99:.2f} ms   "
            f"target <= {FULL_P99_TARGET_MS:.0f} ms bf16 on an H100: {verdict}"
        )
    return "\n".join(lines)


def register(bench_app: typer.Typer) -> None:
    @bench_app.command("frontend")
    def frontend(
        model: str = typer.Option(
            "random:tiny", help="Front-end: random:tiny, random:7b, a repo id or a directory."
        ),
        steps: int = typer.Option(600, min=4, help="Steps measured per loop, split over the rounds."),
        device: str = typer.Option("auto", help="auto, cuda or cpu."),
        rounds: int = typer.Option(6, min=1, help="Alternating bare/engine rounds."),
        half: bool = typer.Option(False, help="fp16 instead of bf16 on CUDA."),
        seed: int = typer.Option(0, help="Sampling seed."),
        cpu_threads: int = typer.Option(1, min=1, help="torch threads on CPU."),
        warmup: int = typer.Option(4, min=2, help="Warm-up steps before each round."),
        quantize: str = typer.Option("none", help="int8: the LM's linear layers in int8 (CUDA only)."),
        batch: int = typer.Option(
            1, min=1, help="N > 1: the batched front-end's step at N sessions against 1 (kame serve)."
        ),
        realtime: float = typer.Option(
            0.0, min=0.0, help="Then N (--batch) clients paced in real time for this many seconds."
        ),
        as_json: bool = typer.Option(False, "--json", help="One JSON object on stdout (table: stderr)."),
    ) -> None:
        """Per-step p50/p95/p99 of the front-end loop and its overhead over a bare moshi loop."""
        from kame_cli.engine.config import quantize_flag

        q = quantize_flag(quantize) or "none"
        setup = BenchSetup(model, steps, device, rounds, half, seed, cpu_threads, warmup, q)
        if batch > 1 or realtime > 0:
            _batch_command(setup, batch, realtime, as_json)
            return
        result = run_frontend_bench(setup)
        typer.echo(report(result, model), err=as_json)
        if as_json:
            typer.echo(json.dumps(figures(result)))
