"""`kame replay LOG_DIR --profile A --profile B`: a recorded session's input through each profile.

Each profile gets the same input audio (LOG_DIR/input.wav) in a real `kame talk` session (file
mode, real-time pace unless `--fast`), measured like `kame bench tandem`; the user turns come from
the offline VAD of that audio, so the rows line up across profiles.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from kame_cli.cli_options import JsonOption


def replay(
    log_dir: Annotated[Path, typer.Argument(help="A recorded session (kame talk --log-dir DIR).")],
    profile: Annotated[
        list[str] | None,
        typer.Option("--profile", "-p", help="Profile to replay with (repeat: one column each)."),
    ] = None,
    model: Annotated[str | None, typer.Option(help="Front-end model for every profile.")] = None,
    fast: Annotated[
        bool, typer.Option("--fast", help="As fast as possible (texts compare; latencies are not a user's).")
    ] = False,
    keep: Annotated[
        Path | None, typer.Option("--log-dir", help="Keep each replay's session log in DIR/<profile>.")
    ] = None,
    turns: Annotated[
        int | None,
        typer.Option(
            "--turns", min=1, help="Only the first N user turns (the input is cut where turn N+1 starts)."
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Replay a recorded session with other profiles; a side-by-side table per user turn."""
    code = run_replay(
        log_dir, profile or [], model=model, fast=fast, keep=keep, as_json=as_json, first_turns=turns
    )
    raise typer.Exit(code)


def run_replay(
    log_dir: Path,
    specs: Sequence[str],
    *,
    model: str | None,
    fast: bool,
    keep: Path | None,
    as_json: bool,
    first_turns: int | None = None,
) -> int:
    from kame_cli.errors import ConfigError
    from kame_cli.profiles import load_profile
    from kame_cli.session.record import read_session
    from kame_cli.tandem.measured import SessionFailed, measure_run
    from kame_cli.tandem.measures import turns_from_segments, vad_segments

    out = sys.stderr if as_json else sys.stdout

    def say(line: str) -> None:
        print(line, file=out, flush=True)

    if not specs:
        raise ConfigError("kame replay needs at least one --profile NAME|PATH (repeat it to compare)")
    recorded = read_session(log_dir)  # a folder that is not a session log: one line, exit 2
    profiles = [load_profile(spec) for spec in specs]
    labels = _labels([p.name for p in profiles])
    audio, rate = recorded.input_audio()
    turns = turns_from_segments(vad_segments(audio, rate, profiles[0].stt.end_silence_ms))
    if not turns:
        raise ConfigError(f"{log_dir}/input.wav: no speech found in it (offline VAD): nothing to replay")
    heard = len(turns)
    wav = recorded.input_wav
    with tempfile.TemporaryDirectory(prefix="kame-replay-") as tmp:
        if first_turns is not None and first_turns < len(turns):
            # Cut where the next turn starts: the gap after the last kept turn (where its answer
            # reaches the voice) stays whole.
            audio = audio[: int(turns[first_turns].start * rate)]
            turns = turns[:first_turns]
            import soundfile as sf

            wav = Path(tmp) / "input-cut.wav"
            sf.write(str(wav), audio, rate, subtype="PCM_16")
        say(f"replay of {log_dir}: {len(turns)} of {heard} user turns, {len(audio) / rate:.1f} s of input")
        _say_retrievals(say, "recorded", recorded.events)
        results: list[dict[str, Any]] = []
        failed = False
        for label, prof in zip(labels, profiles, strict=True):
            target = (keep / label) if keep is not None else Path(tmp) / label
            say(f"profile {label} ({prof.path}){', fast' if fast else ', real time'}")
            try:
                result = measure_run(prof, wav, target, None, model=model, say=say, fast=fast, turns=turns)
            except SessionFailed as err:
                print(f"kame: {err}", file=sys.stderr)
                return 1
            result["label"] = label
            if (target / "events.jsonl").is_file():
                _say_retrievals(say, label, read_session(target).events)
            _say_tool_calls(target, say)
            failed |= bool(result["error"])
            results.append(result)
    _table(results, labels, turns, out)
    if as_json:
        rows = []
        for index, turn in enumerate(turns):
            rows.append(
                {
                    "index": index + 1,
                    "speech_start": round(turn.start, 3),
                    "speech_end": round(turn.end, 3),
                    "profiles": {r["label"]: r["questions"][index] for r in results},
                }
            )
        figures = {r["label"]: {k: v for k, v in r.items() if k != "questions"} for r in results}
        print(json.dumps({"source": str(log_dir), "fast": fast, "turns": rows, "profiles": figures}))
    return 1 if failed else 0


def _say_retrievals(say: Any, label: str, events: Sequence[Any]) -> None:
    """[knowledge] One line on what the user's documents gave the session, when it retrieved any."""
    from kame_cli.knowledge.summary import retrieval_line

    line = retrieval_line(events)
    if line is not None:
        say(f"{label}: {line}")


def _say_tool_calls(log_dir: Path, say: Any) -> None:
    """A line per tool call the profile's LLM made during the replay (none: nothing said)."""
    from kame_cli.events import ToolCallFinished
    from kame_cli.session.logfile import read_log
    from kame_cli.ui.lines import tool_call_text

    path = log_dir / "events.jsonl"
    if not path.is_file():  # the session failed before it wrote one: its error is told already
        return
    for event in read_log(path):
        if isinstance(event, ToolCallFinished):
            say(f"  oracle #{event.generation} {tool_call_text(event)}")


def _labels(names: Sequence[str]) -> list[str]:
    labels: list[str] = []
    for name in names:
        label, n = name, 2
        while label in labels:
            label, n = f"{name}#{n}", n + 1
        labels.append(label)
    return labels


def _sec(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _table(results: Sequence[dict[str, Any]], labels: Sequence[str], turns: Sequence[Any], out: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title="per user turn: what each profile heard and its oracle; (a) informed oracle, (b) any "
        "oracle, (c) cascade, in seconds after the end of speech",
        show_lines=True,
    )
    table.add_column("turn", justify="right", no_wrap=True)
    for label in labels:
        table.add_column(f"{label}: heard → oracle", overflow="fold", ratio=1)
        table.add_column(label, no_wrap=True)
    for index, turn in enumerate(turns):
        cells = [f"{index + 1}\n{turn.start:.1f}-{turn.end:.1f} s"]
        for result in results:
            row = result["questions"][index]
            cells.append(f"[dim]{row['final_text'] or '-'}[/dim]\n→ {row['oracle_text'] or '(no oracle)'}")
            cells.append(
                f"(a) {_sec(row['informed_s'])}\n(b) {_sec(row['any_s'])}\n(c) {_sec(row['cascaded_s'])}\n"
                f"restarts {row['restarts']}"
            )
        table.add_row(*cells)
    Console(file=out, width=max(120, 70 * len(labels) + 12)).print(table)


def register(app: typer.Typer) -> None:
    app.command("replay")(replay)
