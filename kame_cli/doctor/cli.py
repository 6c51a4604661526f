"""`kame doctor`: thin command over `run_doctor`."""

from __future__ import annotations

from typing import Annotated

import typer

from kame_cli.cli_options import ModelOption, ProfileOption


def register(app: typer.Typer) -> None:
    app.command()(doctor)


def doctor(
    profile: ProfileOption = None,
    model: ModelOption = None,
    quantize: Annotated[
        str | None, typer.Option("--quantize", "-q", help="Plan for int8 linears (int8) or none.")
    ] = None,
    input_device: Annotated[str | None, typer.Option(help="Microphone to check: index or name.")] = None,
    output_device: Annotated[str | None, typer.Option(help="Speaker to check: index or name.")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object (shape: docs/troubleshooting.md).")
    ] = False,
) -> None:
    """Check GPU, memory, CUDA libraries, checkpoint, audio devices and LLM before a session.

    Exit 0 when nothing fails (warnings allowed), 1 otherwise. Downloads and changes nothing.
    """
    from kame_cli.doctor.run import DoctorOptions, run_doctor
    from kame_cli.engine.config import quantize_flag

    report = run_doctor(
        DoctorOptions(
            profile=profile,
            model=model,
            quantize=quantize_flag(quantize),
            input_device=input_device,
            output_device=output_device,
        )
    )
    typer.echo(report.to_json() if as_json else report.render())
    raise typer.Exit(report.exit_code)
