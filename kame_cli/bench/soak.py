"""`kame bench soak`: a long real-time file session through the exact `kame talk` path.

The full tandem (`offline` profile) with the live panel drawing into a pseudo-terminal. Prints
deadline misses, frames dropped by the lag bound, skipped STT decodes, step-time percentiles and
the resident memory of kame's processes (supervisor, front-end, back-end) when the session starts
and when it ends (targets: 0 misses, 0 drops, RSS growth <= 20 MB over 10 minutes).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer

from kame_cli.cli_options import JsonOption
from kame_cli.events import AudioXrun, OracleChunk, SessionSummary, StepTiming

MISS_TARGET = 0
DROP_TARGET = 0
RSS_GROWTH_TARGET_MB = 20.0
_QUESTIONS = (
    "What is the capital city of France?",
    "How many legs does a spider have?",
    "Tell me the boiling point of water.",
    "Who wrote the play Romeo and Juliet?",
)


def soak_input(path: Path, minutes: float, pause_s: float = 4.0) -> Path:
    """Spoken questions (espeak-ng) with pauses, repeated to `minutes` of 24 kHz audio."""
    import numpy as np
    import soundfile as sf

    from kame_cli.audio_io.speech import espeak

    pause = np.zeros(int(pause_s * 24_000), np.float32)
    clips = [np.concatenate([espeak(text, "en-us", 150), pause]) for text in _QUESTIONS]
    cycle = np.concatenate(clips)
    total = int(minutes * 60 * 24_000)
    audio = np.tile(cycle, total // len(cycle) + 1)[:total]
    sf.write(path, audio, 24_000, subtype="PCM_16")
    return path


class RssSampler:
    """Resident memory of kame's processes (this one, the front-end and the back-end) and, apart,
    of the llama.cpp server, over time."""

    def __init__(self, period_s: float = 5.0) -> None:
        import psutil

        self._process = psutil.Process()
        self._period = period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kame-rss", daemon=True)
        self.samples: list[tuple[float, float, float]] = []
        """(monotonic time, kame's RSS MB, the LLM server's RSS MB)."""
        self.by_process: list[dict[str, float]] = []
        """RSS MB of each kame process (supervisor, frontend, backend) at each sample."""

    def sample(self) -> tuple[float, float, float]:
        import psutil

        own = self._process.memory_info().rss / 2**20
        split = {"supervisor": own}
        children = 0.0
        for child in self._process.children(recursive=True):
            try:
                rss = child.memory_info().rss / 2**20
                cmdline = " ".join(child.cmdline())
            except psutil.NoSuchProcess:
                continue
            if "template_proc" in cmdline:
                continue  # shared by every session of a run (`session.template`): no session's memory
            if "llama_child" in cmdline:
                children += rss
            else:
                own += rss
                role = (
                    "frontend"
                    if "frontend_proc" in cmdline
                    else "backend"
                    if "backend_proc" in cmdline
                    else "other"
                )
                split[role] = split.get(role, 0.0) + rss
        row = (time.monotonic(), own, children)
        if "frontend" in split and "backend" in split:
            # Only while the session runs whole: a sample taken as it ends (the children gone,
            # the supervisor left) would read as a fall of a gigabyte.
            self.by_process.append(split)
            self.samples.append(row)
        return row

    def start(self) -> None:
        self.sample()
        self._thread.start()

    def stop(self) -> None:
        # No sample here: the session (and its llama.cpp child) has already ended. The last
        # periodic sample, at most one period before the end, is the session's end figure.
        self._stop.set()
        self._thread.join(2 * self._period)

    def _run(self) -> None:
        while not self._stop.wait(self._period):
            self.sample()


def soak(
    minutes: float,
    profile: str,
    model: str,
    no_llm: bool,
    input_file: Path | None,
    panel: bool = True,
    realtime: bool = False,
) -> dict[str, Any]:
    """Run the session and return the figures."""
    from kame_cli.bench.isolation import panel_terminal
    from kame_cli.session.logfile import read_log
    from kame_cli.session.options import FrontendSpec, InputSpec
    from kame_cli.session.talk import TalkOptions, run_talk
    from kame_cli.session.template import without_templates
    from kame_cli.stats import percentile

    with tempfile.TemporaryDirectory(prefix="kame-soak-") as tmp:
        wav = input_file or soak_input(Path(tmp) / "soak.wav", minutes)
        log_dir = Path(tmp) / "log"
        sampler = RssSampler()
        opts = TalkOptions(
            profile=profile,
            frontend=FrontendSpec(model=model),
            input=InputSpec(file=wav),
            log_dir=log_dir,
            no_ui=not panel,
            no_llm=no_llm,
            realtime=realtime,
        )
        started = time.monotonic()
        terminal = panel_terminal() if panel else contextlib.nullcontext(io.StringIO())
        with terminal as out, without_templates():  # the sampler finds the children among its own
            # The first sample once the session runs: the models are loaded and warmed up by then.
            run_talk(opts, out=out, on_started=lambda: sampler.start())
        sampler.stop()
        wall = time.monotonic() - started
        events = read_log(log_dir / "events.jsonl")
    kinds = Counter(type(e).__name__ for e in events)
    steps = [e.total_ms for e in events if isinstance(e, StepTiming)]
    ttft = [e.latency_ms for e in events if isinstance(e, OracleChunk) and e.first]
    xruns = Counter(e.kind for e in events if isinstance(e, AudioXrun))
    first, last = sampler.samples[0], sampler.samples[-1]
    # After one minute: the allocators of torch, CTranslate2 and Python have seen the first answers.
    minute = next((i for i, row in enumerate(sampler.samples) if row[0] - first[0] >= 60.0), 0)
    summary = next((dataclasses.asdict(e) for e in events if isinstance(e, SessionSummary)), {})
    figures = {
        "audio_s": len(steps) * 0.08,
        "wall_s": wall,
        "steps": len(steps),
        "deadline_misses": kinds["DeadlineMiss"],
        "dropped_frames": summary.get("dropped_frames", 0),
        "stt_decodes_skipped": summary.get("stt_decodes_skipped", 0),
        "stt_dropped_frames": summary.get("stt_dropped_frames", 0),
        "backend_restarts": summary.get("backend_restarts", 0),
        "xruns": sum(xruns.values()),
        "step_p50_ms": percentile(steps, 50),
        "step_p99_ms": percentile(steps, 99),
        "step_max_ms": max(steps, default=0.0),
        "rss_start_mb": first[1],
        "rss_end_mb": last[1],
        "rss_1min_mb": sampler.samples[minute][1],
        "rss_start_by_process_mb": sampler.by_process[0],
        "rss_end_by_process_mb": sampler.by_process[-1],
        "child_rss_start_mb": first[2],
        "child_rss_end_mb": last[2],
        "oracle_requests": kinds["OracleRequestStarted"],
        "oracle_first_chunk_p50_ms": percentile(ttft, 50),
        "oracle_first_chunk_p95_ms": percentile(ttft, 95),
        "finals": kinds["FinalTranscript"],
        "realtime": realtime,
    }
    return figures


def _print(f: dict[str, Any], profile: str, model: str, out: TextIO) -> None:
    growth = f["rss_end_mb"] - f["rss_start_mb"]
    ok = (
        f["deadline_misses"] <= MISS_TARGET
        and f["dropped_frames"] <= DROP_TARGET
        and growth <= RSS_GROWTH_TARGET_MB
    )

    def say(line: str) -> None:
        print(line, file=out, flush=True)

    mode = ", --realtime" if f.get("realtime") else ""
    say(
        f"soak: profile {profile}, front-end {model}{mode}, {f['audio_s']:.0f} s of audio in "
        f"{f['wall_s']:.0f} s"
    )
    say(
        f"  steps {f['steps']}  p50 {f['step_p50_ms']:.1f} ms  p99 {f['step_p99_ms']:.1f} ms  "
        f"max {f['step_max_ms']:.1f} ms (budget 80 ms)"
    )
    say(
        f"  deadline misses {f['deadline_misses']} (target {MISS_TARGET})  "
        f"dropped frames {f['dropped_frames']} "
        f"(target {DROP_TARGET})  STT decodes skipped {f['stt_decodes_skipped']}  xruns {f['xruns']} "
        "(a file session has no sound card)"
    )
    say(
        f"  RSS kame {f['rss_start_mb']:.0f} -> {f['rss_end_mb']:.0f} MB (growth {growth:+.1f} MB, target <= "
        f"{RSS_GROWTH_TARGET_MB:.0f})  LLM server {f['child_rss_start_mb']:.0f} -> "
        f"{f['child_rss_end_mb']:.0f} MB"
    )
    start, end = f["rss_start_by_process_mb"], f["rss_end_by_process_mb"]
    say(
        f"  after the first minute {f['rss_1min_mb']:.0f} -> {f['rss_end_mb']:.0f} MB; by process: "
        + ", ".join(f"{k} {start.get(k, 0):.0f} -> {end.get(k, 0):.0f}" for k in sorted(end))
    )
    say(
        f"  user turns {f['finals']}  oracle requests {f['oracle_requests']}  first chunk p50 "
        f"{f['oracle_first_chunk_p50_ms']:.0f} ms, p95 {f['oracle_first_chunk_p95_ms']:.0f} ms  "
        f"{'PASS' if ok else 'MISS'}"
    )


def register(bench_app: typer.Typer) -> None:
    @bench_app.command("soak")
    def soak_command(
        minutes: Annotated[float, typer.Option(min=0.1, help="Length of the session.")] = 10.0,
        profile: Annotated[str, typer.Option(help="Profile name or path.")] = "offline",
        model: Annotated[str, typer.Option(help="Front-end model.")] = "random:tiny",
        no_llm: Annotated[bool, typer.Option("--no-llm", help="Front-end and STT only.")] = False,
        input_file: Annotated[
            Path | None, typer.Option("--input", help="A WAV to play instead of generated questions.")
        ] = None,
        no_panel: Annotated[bool, typer.Option("--no-panel", help="Plain lines, no panel in a pty.")] = False,
        realtime: Annotated[
            bool, typer.Option("--realtime", help="The session as `kame talk --realtime`.")
        ] = False,
        as_json: JsonOption = False,
    ) -> None:
        """Long real-time session with the panel: misses, drops, skipped decodes, RSS at start and end."""
        figures = soak(minutes, profile, model, no_llm, input_file, panel=not no_panel, realtime=realtime)
        _print(figures, profile, model, sys.stderr if as_json else sys.stdout)
        if as_json:
            print(json.dumps(figures))
