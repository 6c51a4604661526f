"""`kame bench isolation`: does the rest of the tandem slow the front-end's real-time loop down?

In one run, on the same input, at real-time pace through the exact `kame talk` file path:
1. the front-end alone (no STT, no oracle, no panel);
2. the full tandem (`offline` profile: tiny.en STT, SmolLM2 on llama.cpp) with the Rich panel
   drawing into a pseudo-terminal.
Prints the step-time p50/p99 of both and their ratio (target: p99 ratio <= 1.2).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer

from kame_cli.events import (
    DeadlineMiss,
    Event,
    FinalTranscript,
    FramesDropped,
    OracleRequestStarted,
    StepTiming,
)

P99_RATIO_TARGET = 1.2


@contextlib.contextmanager
def panel_terminal(columns: int = 120, rows: int = 50) -> Iterator[TextIO]:
    """A pseudo-terminal for the live panel to draw into; what it draws is read and thrown away."""
    import fcntl
    import struct
    import termios

    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    stop = threading.Event()

    def drain() -> None:
        # A terminal that nobody reads fills up and blocks the writer: read like a terminal would.
        while not stop.is_set():
            try:
                if not os.read(master, 65536):
                    return
            except OSError:
                return

    reader = threading.Thread(target=drain, name="kame-bench-pty", daemon=True)
    reader.start()
    out = os.fdopen(slave, "w", encoding="utf-8", errors="replace")
    previous = os.environ.get("TERM")
    if previous in (None, "", "dumb"):
        os.environ["TERM"] = "xterm-256color"
    saved = {k: os.environ.get(k) for k in ("COLUMNS", "LINES")}
    os.environ.update(COLUMNS=str(columns), LINES=str(rows))
    try:
        yield out
    finally:
        stop.set()
        out.close()
        os.close(master)
        for key, value in {**saved, "TERM": previous}.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def session_events(log_dir: Path) -> list[Event]:
    from kame_cli.session.logfile import read_log

    return read_log(log_dir / "events.jsonl")


def step_times(events: list[Event]) -> list[float]:
    return [e.total_ms for e in events if isinstance(e, StepTiming)]


def _count(events: list[Event], cls: type) -> int:
    return sum(1 for e in events if isinstance(e, cls))


def _dropped(events: list[Event]) -> int:
    return sum(e.count for e in events if isinstance(e, FramesDropped))


def isolation(
    seconds: float,
    profile: str,
    model: str,
    input_file: Path | None,
    log: TextIO,
    realtime: bool = False,
) -> dict[str, Any]:
    """Run both sessions and return the figures."""
    from kame_cli.bench.soak import soak_input
    from kame_cli.session.options import FrontendSpec, InputSpec
    from kame_cli.session.talk import TalkOptions, run_talk
    from kame_cli.stats import percentile

    with tempfile.TemporaryDirectory(prefix="kame-isolation-") as tmp:
        wav = input_file or soak_input(Path(tmp) / "input.wav", seconds / 60.0)
        runs: dict[str, list[Event]] = {}
        for name in ("alone", "tandem"):
            log_dir = Path(tmp) / name
            opts = TalkOptions(
                profile=profile,
                frontend=FrontendSpec(model=model),
                input=InputSpec(file=wav),
                log_dir=log_dir,
                backends=name == "tandem",
                realtime=realtime,
            )
            print(f"isolation: {name} ({seconds:.0f} s of audio in real time)…", file=log, flush=True)
            if name == "tandem":
                with panel_terminal() as terminal:
                    run_talk(opts, out=terminal)
            else:
                run_talk(dataclasses.replace(opts, no_ui=True), out=io.StringIO())
            runs[name] = session_events(log_dir)
    alone, tandem = step_times(runs["alone"]), step_times(runs["tandem"])
    p99_alone, p99_tandem = percentile(alone, 99), percentile(tandem, 99)
    misses = _count(runs["tandem"], DeadlineMiss)
    return {
        "steps_alone": len(alone),
        "steps_tandem": len(tandem),
        "p50_alone_ms": percentile(alone, 50),
        "p99_alone_ms": p99_alone,
        "p50_tandem_ms": percentile(tandem, 50),
        "p99_tandem_ms": p99_tandem,
        "p99_ratio": p99_tandem / p99_alone if p99_alone else 0.0,
        "deadline_misses": misses,
        "deadline_misses_alone": _count(runs["alone"], DeadlineMiss),
        "dropped_frames_alone": _dropped(runs["alone"]),
        "dropped_frames": _dropped(runs["tandem"]),
        "oracle_requests": _count(runs["tandem"], OracleRequestStarted),
        "finals": _count(runs["tandem"], FinalTranscript),
        "realtime": realtime,
    }


def _print(f: dict[str, Any], out: TextIO) -> None:
    ok = f["p99_ratio"] <= P99_RATIO_TARGET
    print(
        f"  front-end alone : {f['steps_alone']} steps  p50 {f['p50_alone_ms']:.1f} ms  "
        f"p99 {f['p99_alone_ms']:.1f} ms  misses {f['deadline_misses_alone']}  "
        f"dropped {f['dropped_frames_alone']}",
        file=out,
    )
    print(
        f"  full tandem+panel: {f['steps_tandem']} steps  p50 {f['p50_tandem_ms']:.1f} ms  "
        f"p99 {f['p99_tandem_ms']:.1f} ms  misses {f['deadline_misses']}  dropped {f['dropped_frames']}  "
        f"(user turns {f['finals']}, oracle requests {f['oracle_requests']})",
        file=out,
    )
    print(
        f"  p99 ratio {f['p99_ratio']:.2f} (target <= {P99_RATIO_TARGET})  {'PASS' if ok else 'MISS'}",
        file=out,
        flush=True,
    )


def register(bench_app: typer.Typer) -> None:
    @bench_app.command("isolation")
    def isolation_command(
        seconds: Annotated[
            float, typer.Option(min=5.0, help="Audio per run (two runs, in real time).")
        ] = 60.0,
        profile: Annotated[str, typer.Option(help="Profile name or path.")] = "offline",
        model: Annotated[str, typer.Option(help="Front-end model.")] = "random:tiny",
        input_file: Annotated[
            Path | None, typer.Option("--input", help="A WAV to play instead of generated questions.")
        ] = None,
        realtime: Annotated[
            bool, typer.Option("--realtime", help="Both sessions as `kame talk --realtime`.")
        ] = False,
        as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
    ) -> None:
        """Front-end step times alone vs beside the full tandem and the panel (same input)."""
        human = sys.stderr if as_json else sys.stdout
        figures = isolation(seconds, profile, model, input_file, human, realtime=realtime)
        _print(figures, human)
        if as_json:
            print(json.dumps(figures))
