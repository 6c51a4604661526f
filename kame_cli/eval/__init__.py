"""`kame eval`: how much of the LLM's knowledge reaches the voice, per setup, judged by an LLM.

Modules: `questions` (the JSONL set, and the bundled one), `speech` (espeak-ng or recorded turns),
`setups` (front-end alone, tandem per profile, cascade), `runner` (a `kame talk` child per question
and session setup), `extract` (its log read into answers), `cascade` (STT final -> LLM), `judge`
(the prompt, the parsing, the failures), `cache` (the resumable `--out` folder), `report` and
`figure` (the table, `--json`, the score-latency figure), `run` (the whole command).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("eval")
    def eval_command(
        questions: Annotated[
            Path | None,
            typer.Option(
                "--questions",
                help="JSONL: {id, category, turns: [...], reference} (default: the bundled 40).",
            ),
        ] = None,
        profile: Annotated[
            list[str] | None,
            typer.Option(
                "--profile",
                "-p",
                help="A tandem setup per profile (repeat); the first also serves the others.",
            ),
        ] = None,
        frontend_only: Annotated[
            bool,
            typer.Option("--frontend-only", help="Also the front-end alone (--no-llm): the Moshi baseline."),
        ] = False,
        cascade: Annotated[
            bool,
            typer.Option("--cascade", help="Also a cascade: STT final -> the first profile's LLM -> answer."),
        ] = False,
        judge: Annotated[
            str | None,
            typer.Option("--judge", help="Profile whose LLM rates the answers (default: the first)."),
        ] = None,
        voice: Annotated[
            str, typer.Option("--voice", help="espeak-ng, or a folder of <id>-<turn>.wav recordings.")
        ] = "espeak-ng",
        out: Annotated[
            Path, typer.Option("--out", help="Folder for logs, answers and ratings (a rerun resumes).")
        ] = Path("kame-eval"),
        as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
        figure: Annotated[
            Path | None, typer.Option("-o", "--figure", help="Draw score against latency to a PNG/SVG/PDF.")
        ] = None,
        model: Annotated[str | None, typer.Option(help="Front-end model (default: the profile's).")] = None,
        gap: Annotated[
            float,
            typer.Option(min=1.0, max=120.0, help="Seconds of silence after each turn (time to answer)."),
        ] = 6.0,
        fast: Annotated[
            bool,
            typer.Option(
                "--fast", help="Sessions as fast as possible: quick plumbing checks, replies cut short."
            ),
        ] = False,
        seed: Annotated[int, typer.Option(min=0, max=2**32 - 1, help="Front-end sampling seed.")] = 0,
        judge_timeout: Annotated[
            float,
            typer.Option(min=1.0, max=600.0, help="Seconds a judge may take per rating (then a failure)."),
        ] = 60.0,
        limit: Annotated[int | None, typer.Option(min=1, help="Only the first N questions.")] = None,
        knowledge: Annotated[
            bool,
            typer.Option(
                "--knowledge",
                help="Each profile with [knowledge] documents also without them: what the documents add.",
            ),
        ] = False,
    ) -> None:
        """How much of the LLM's knowledge reaches the voice: spoken questions, judged answers, one table."""
        from kame_cli.eval.run import EvalOptions, run_eval

        code = run_eval(
            EvalOptions(
                questions=questions,
                profiles=profile or [],
                frontend_only=frontend_only,
                cascade=cascade,
                judge=judge,
                voice=voice,
                out=out,
                as_json=as_json,
                figure=figure,
                model=model,
                gap_s=gap,
                fast=fast,
                seed=seed,
                judge_timeout_s=judge_timeout,
                limit=limit,
                knowledge=knowledge,
            )
        )
        raise typer.Exit(code)
