"""`kame bench isolation`: does the rest of the tandem slow the front-end's real-time loop down?

One session of the full tandem (`offline` profile: tiny.en STT, SmolLM2 on llama.cpp) through the
exact `kame talk` file path, at real-time pace, with the Rich panel drawing into a pseudo-terminal.
Its time is cut into alternating windows: in "alone" windows the back-end process and the
llama.cpp child are stopped, in "tandem" windows they run (`bench.windows`). Prints the
front-end's step-time p50/p99 in both kinds of window and their ratio (target: p99 ratio <= 1.2,
0 deadline misses), with the load the machine carried from outside kame meanwhile.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TextIO

import typer

from kame_cli.events import (
    DeadlineMiss,
    Event,
    FinalTranscript,
    OracleRequestStarted,
    SessionStarted,
    SessionSummary,
    StepTiming,
)

if TYPE_CHECKING:
    from kame_cli.session.options import TalkOptions

P99_RATIO_TARGET = 1.2
WINDOW_S = 5.0
"""Seconds per window: several per kind in a short run, long enough for the STT to decode and the
LLM to answer within one."""
_SETTLE_S = 0.3
"""Steps this soon after a window began count in neither kind: the back-ends were just stopped or
resumed."""
_TAIL_S = 6.0


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


def file_session(wav: Path, profile: str, model: str, log_dir: Path, **more: Any) -> TalkOptions:
    """`kame talk --profile P --model M --input WAV --log-dir DIR` (and `more` options), as a bench
    runs it: at real-time pace."""
    from kame_cli.session.options import FrontendSpec, InputSpec, TalkOptions

    spec = FrontendSpec(model=model)
    return TalkOptions(profile=profile, frontend=spec, input=InputSpec(file=wav), log_dir=log_dir, **more)


def session_events(log_dir: Path) -> list[Event]:
    from kame_cli.session.logfile import read_log

    return read_log(log_dir / "events.jsonl")


def _count(events: list[Event], cls: type) -> int:
    return sum(1 for e in events if isinstance(e, cls))


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def isolation(
    seconds: float,
    profile: str,
    model: str,
    input_file: Path | None,
    log: TextIO,
    *,
    realtime: bool = False,
    window_s: float = WINDOW_S,
) -> dict[str, Any]:
    """Run the session in alternating windows and return the figures."""
    from kame_cli.bench.soak import soak_input
    from kame_cli.bench.windows import AlternatingWindows, steps_in
    from kame_cli.session.talk import run_talk
    from kame_cli.session.template import without_templates
    from kame_cli.stats import percentile

    pairs = max(1, round(seconds / window_s))
    windows = AlternatingWindows(window_s, 2 * pairs)
    # The audio outlasts the windows: the back-ends run again (and flush) before the input ends.
    audio_s = 2 * pairs * window_s + _TAIL_S
    load_start = os.getloadavg()
    started: list[float] = []

    def on_started() -> None:
        started.append(time.monotonic())
        windows.start()

    with tempfile.TemporaryDirectory(prefix="kame-isolation-") as tmp:
        wav = input_file or soak_input(Path(tmp) / "input.wav", audio_s / 60.0)
        log_dir = Path(tmp) / "tandem"
        opts = file_session(wav, profile, model, log_dir, realtime=realtime)
        print(
            f"isolation: {pairs} x {window_s:.0f} s alone and {pairs} x {window_s:.0f} s beside the "
            "back-ends, alternated, in real time…",
            file=log,
            flush=True,
        )
        try:
            with panel_terminal() as terminal, without_templates():  # the windows stop our descendants
                run_talk(opts, out=terminal, on_started=on_started)
        finally:
            windows.stop()
        events = session_events(log_dir)
    # Step times are on the session's clock; the windows on this process's monotonic clock.
    origin = next(e.t for e in events if isinstance(e, SessionStarted))
    offset = started[0] - origin if started else 0.0
    steps = [(e.t + offset, e.total_ms) for e in events if isinstance(e, StepTiming)]
    misses = [(e.t + offset, e.total_ms) for e in events if isinstance(e, DeadlineMiss)]
    done = windows.windows
    alone = steps_in(done, "alone", steps, _SETTLE_S)
    tandem = steps_in(done, "tandem", steps, _SETTLE_S)
    p99_alone, p99_tandem = percentile(alone, 99), percentile(tandem, 99)
    summary = next((e for e in events if isinstance(e, SessionSummary)), None)
    return {
        "windows": len(done),
        "window_s": window_s,
        "steps_alone": len(alone),
        "steps_tandem": len(tandem),
        "p50_alone_ms": percentile(alone, 50),
        "p99_alone_ms": p99_alone,
        "p50_tandem_ms": percentile(tandem, 50),
        "p99_tandem_ms": p99_tandem,
        "p99_ratio": p99_tandem / p99_alone if p99_alone else 0.0,
        "deadline_misses": len(steps_in(done, "tandem", misses, _SETTLE_S)),
        "deadline_misses_alone": len(steps_in(done, "alone", misses, _SETTLE_S)),
        "deadline_misses_session": len(misses),
        "dropped_frames": summary.dropped_frames if summary else 0,
        "stt_decodes_skipped": summary.stt_decodes_skipped if summary else 0,
        "stt_dropped_frames": summary.stt_dropped_frames if summary else 0,
        "oracle_requests": _count(events, OracleRequestStarted),
        "finals": _count(events, FinalTranscript),
        "backend_cores_tandem": _mean([w.background_cores for w in done if w.kind == "tandem"]),
        "backend_idle_share": _mean([w.idle_share for w in done if w.kind == "tandem"]),
        "supervisor_cores_alone": _mean([w.supervisor_cores for w in done if w.kind == "alone"]),
        "supervisor_cores_tandem": _mean([w.supervisor_cores for w in done if w.kind == "tandem"]),
        "outside_cores_alone": _mean([w.outside_cores for w in done if w.kind == "alone"]),
        "outside_cores_tandem": _mean([w.outside_cores for w in done if w.kind == "tandem"]),
        "loadavg_start": load_start[0],
        "loadavg_end": os.getloadavg()[0],
        "cpus": os.cpu_count() or 0,
        "realtime": realtime,
    }


def _print(f: dict[str, Any], out: TextIO) -> None:
    ok = f["p99_ratio"] <= P99_RATIO_TARGET and f["deadline_misses"] == 0
    print(
        f"  back-ends stopped : {f['steps_alone']} steps  p50 {f['p50_alone_ms']:.1f} ms  "
        f"p99 {f['p99_alone_ms']:.1f} ms  misses {f['deadline_misses_alone']}  "
        f"(load from outside kame {f['outside_cores_alone']:.2f} cores; supervisor "
        f"{f['supervisor_cores_alone']:.2f})",
        file=out,
    )
    print(
        f"  back-ends running : {f['steps_tandem']} steps  p50 {f['p50_tandem_ms']:.1f} ms  "
        f"p99 {f['p99_tandem_ms']:.1f} ms  misses {f['deadline_misses']}  "
        f"(load from outside kame {f['outside_cores_tandem']:.2f} cores; supervisor "
        f"{f['supervisor_cores_tandem']:.2f}; back-ends used "
        f"{f['backend_cores_tandem']:.2f}, under SCHED_IDLE {100 * f['backend_idle_share']:.0f} % of the "
        f"time; user turns {f['finals']}, oracle requests {f['oracle_requests']})",
        file=out,
    )
    print(
        f"  p99 ratio {f['p99_ratio']:.2f} (target <= {P99_RATIO_TARGET}, 0 misses)  "
        f"{'PASS' if ok else 'MISS'}  ·  load average {f['loadavg_start']:.2f} -> {f['loadavg_end']:.2f} "
        f"on {f['cpus']} CPUs; session: {f['deadline_misses_session']} misses, "
        f"{f['dropped_frames']} frames dropped, {f['stt_decodes_skipped']} STT decodes skipped",
        file=out,
        flush=True,
    )


def register(bench_app: typer.Typer) -> None:
    @bench_app.command("isolation")
    def isolation_command(
        seconds: Annotated[
            float, typer.Option(min=5.0, help="Seconds of each kind of window (the run lasts twice that).")
        ] = 40.0,
        window: Annotated[
            float,
            typer.Option(min=2.0, help="Seconds per window (back-ends stopped, then running, ...)."),
        ] = WINDOW_S,
        profile: Annotated[str, typer.Option(help="Profile name or path.")] = "offline",
        model: Annotated[str, typer.Option(help="Front-end model.")] = "random:tiny",
        input_file: Annotated[
            Path | None, typer.Option("--input", help="A WAV to play instead of generated questions.")
        ] = None,
        realtime: Annotated[
            bool, typer.Option("--realtime", help="The session as `kame talk --realtime`.")
        ] = False,
        as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
    ) -> None:
        """Front-end step times with the back-ends stopped vs running, in alternating windows."""
        human = sys.stderr if as_json else sys.stdout
        figures = isolation(seconds, profile, model, input_file, human, realtime=realtime, window_s=window)
        _print(figures, human)
        if as_json:
            print(json.dumps(figures))
