"""`kame bench tandem`: the tandem end to end against a cascaded baseline, in one run.

Modules: `record` (a session log read back), `oracle_trace` (generations and fed tokens),
`measures` (the figures (a)-(e) per user turn), `cascade` (the cascaded client), `runner` (a
`kame talk` child followed through its log), `bench` (the questions, the command, the report).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kame_cli.cli_options import JsonOption


def register(bench_app: typer.Typer) -> None:
    @bench_app.command("tandem")
    def tandem_command(
        audio_dir: Annotated[
            Path | None,
            typer.Option("--audio-dir", help="Questions: WAV/FLAC files with a .txt transcript beside each."),
        ] = None,
        profile: Annotated[
            list[str] | None, typer.Option("--profile", "-p", help="Profile to measure (repeat for several).")
        ] = None,
        model: Annotated[str | None, typer.Option(help="Front-end model (default: the profile's).")] = None,
        gap: Annotated[
            float, typer.Option(min=1.0, help="Seconds of silence after each question (time to answer).")
        ] = 5.0,
        plot: Annotated[
            Path | None, typer.Option("--plot", help="Draw each session's timeline to this PNG/SVG.")
        ] = None,
        log_dir: Annotated[
            Path | None, typer.Option("--log-dir", help="Keep each session's log in DIR/<profile>.")
        ] = None,
        as_json: JsonOption = False,
    ) -> None:
        """Informed-oracle latency against a cascade (STT final -> LLM first token), in one run."""
        from kame_cli.bench.tandem.bench import run_bench

        code = run_bench(
            audio_dir=audio_dir,
            profiles=profile or ["offline"],
            model=model,
            gap_s=gap,
            plot=plot,
            log_root=log_dir,
            as_json=as_json,
        )
        raise typer.Exit(code)
