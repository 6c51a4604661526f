"""Session commands: `kame talk`, `kame devices`, `kame version` (and `kame plot`, `kame replay` of
a recorded session). Thin: the work is in `session/`, `plot/` and `bench/tandem/`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kame_cli.cli_options import DeviceOption, ModelOption, ProfileOption, QuantizeOption


def register(app: typer.Typer) -> None:
    from kame_cli.plot.cli import register as register_plot
    from kame_cli.replay import register as register_replay

    app.command()(talk)
    app.command()(devices)
    app.command()(version)
    register_plot(app)
    register_replay(app)


def talk(
    profile: ProfileOption = None,
    model: ModelOption = None,
    device: DeviceOption = None,
    half: Annotated[bool, typer.Option("--half", help="fp16 instead of bf16 (older GPUs).")] = False,
    quantize: QuantizeOption = None,
    input_file: Annotated[
        Path | None, typer.Option("--input", "-i", help="Read the user's voice from a WAV file, not the mic.")
    ] = None,
    fast: Annotated[
        bool, typer.Option("--fast", help="With --input: as fast as possible, not real time.")
    ] = False,
    output_file: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the assistant's voice to a WAV file.")
    ] = None,
    output_stereo: Annotated[
        bool,
        typer.Option("--output-stereo", help="--output holds the user (left) and the assistant (right)."),
    ] = False,
    input_device: Annotated[
        str | None, typer.Option(help="Microphone: index or name (see `kame devices`).")
    ] = None,
    output_device: Annotated[
        str | None, typer.Option(help="Speaker: index or name (see `kame devices`).")
    ] = None,
    no_speaker: Annotated[
        bool, typer.Option("--no-speaker", help="Do not play the assistant's voice (file mode default).")
    ] = False,
    log_dir: Annotated[
        Path | None, typer.Option(help="Write events.jsonl and the input/output audio to this folder.")
    ] = None,
    no_ui: Annotated[bool, typer.Option("--no-ui", help="Plain lines instead of the live panel.")] = False,
    no_llm: Annotated[
        bool, typer.Option("--no-llm", help="Run the front-end alone, without the oracle.")
    ] = False,
    seed: Annotated[
        int | None, typer.Option(min=0, max=2**32 - 1, help="Sampling seed for the front-end (0 to 2^32-1).")
    ] = None,
    realtime: Annotated[
        bool,
        typer.Option(
            "--realtime", help="Run the front-end under SCHED_FIFO/RR where the OS allows (one line if not)."
        ),
    ] = False,
    debug_step_delay_ms: Annotated[
        float,
        typer.Option(
            "--debug-step-delay-ms",
            min=0.0,
            help="Debug: slow every front-end step by this many ms, as a too slow device would.",
        ),
    ] = 0.0,
    aec: Annotated[
        str | None,
        typer.Option("--aec", help="Echo cancellation: auto (on when playing through a speaker), on or off."),
    ] = None,
    headphones: Annotated[
        bool, typer.Option("--headphones", help="The voice plays into headphones: same as --aec off.")
    ] = False,
    echo_reference: Annotated[
        Path | None,
        typer.Option(
            help="With --input: the assistant's output as played (a log's output.wav, or the same "
            "--output-stereo file), replayed through the echo canceller."
        ),
    ] = None,
    server: Annotated[
        str | None, typer.Option(help="Talk to a `kame serve` at this URL (ws:// or wss://) instead.")
    ] = None,
) -> None:
    """Talk with the assistant: microphone and speaker, or a WAV file in and out."""
    if server is not None:  # the tandem runs on that server; this side has the audio, panel and log
        from kame_cli.serve.client import talk_remote

        raise typer.Exit(talk_remote(**locals()))
    from kame_cli.session.options import EchoSpec, FrontendSpec, InputSpec, OutputSpec, TalkOptions
    from kame_cli.session.talk import run_talk

    opts = TalkOptions(
        profile=profile,
        frontend=FrontendSpec(model=model, device=device, half=half, quantize=quantize, seed=seed),
        input=InputSpec(file=input_file, fast=fast, device=input_device),
        output=OutputSpec(
            file=output_file, stereo=output_stereo, device=output_device, speaker=not no_speaker
        ),
        echo=EchoSpec(aec=aec, headphones=headphones, reference=echo_reference),
        log_dir=log_dir,
        no_ui=no_ui,
        no_llm=no_llm,
        realtime=realtime,
        debug_step_delay_ms=debug_step_delay_ms,
    )
    raise typer.Exit(run_talk(opts))


def devices() -> None:
    """List audio devices with their channels and default rates."""
    from rich.console import Console

    from kame_cli.audio_io.devices import list_devices, render_devices_table

    Console().print(render_devices_table(list_devices()))


def version() -> None:
    """Print kame's version."""
    from kame_cli import __version__

    typer.echo(__version__)
