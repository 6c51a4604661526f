"""Registers `kame bench <stage>`: each stage's module adds its own sub-command."""

from __future__ import annotations

import importlib

import typer

_STAGES = ("frontend", "stt", "oracle", "soak")


def register(app: typer.Typer) -> None:
    bench_app = typer.Typer(
        help="Measure latency stage by stage and print the figures.", no_args_is_help=True
    )
    for stage in _STAGES:
        try:
            module = importlib.import_module(f"kame_cli.bench.{stage}")
        except ModuleNotFoundError as err:
            if err.name != f"kame_cli.bench.{stage}":
                raise
            continue
        module.register(bench_app)
    app.add_typer(bench_app, name="bench")
