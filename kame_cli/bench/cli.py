"""Registers `kame bench <stage>`: each stage's module adds its own sub-command."""

from __future__ import annotations

import importlib

import typer

_STAGES = ("frontend", "stt", "oracle", "soak", "isolation", "echo", "tandem", "serve")


def register(app: typer.Typer) -> None:
    bench_app = typer.Typer(
        help="Measure latency stage by stage and print the figures.", no_args_is_help=True
    )
    for stage in _STAGES:
        importlib.import_module(f"kame_cli.bench.{stage}").register(bench_app)
    app.add_typer(bench_app, name="bench")
