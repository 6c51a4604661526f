"""`kame plot LOG_DIR`: draw a recorded session's timeline to a PNG or SVG file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def plot(
    log_dir: Annotated[Path, typer.Argument(help="A session log folder (kame talk --log-dir DIR).")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="PNG or SVG file (default: LOG_DIR/timeline.png).")
    ] = None,
) -> None:
    """Draw a session's timeline: audio, transcripts, oracle requests and tokens, words, step times."""
    from kame_cli.errors import ConfigError, printable

    if not log_dir.is_dir():
        raise ConfigError(f"{log_dir}: not a folder: give a folder written by `kame talk --log-dir DIR`")
    target = output if output is not None else log_dir / "timeline.png"
    what = f"--output {target}" if output is not None else f"{target}"
    if target.suffix.lower() not in (".png", ".svg"):
        raise ConfigError(f"{what}: give a .png or .svg file name")
    if not target.parent.is_dir():
        raise ConfigError(f"{what}: folder {target.parent} does not exist")
    from kame_cli.session.files import check_user_target

    check_user_target(target, what)
    from kame_cli.plot.timeline import draw_session

    draw_session(log_dir, target, what=what)
    typer.echo(printable(f"timeline: {target}"))


def register(app: typer.Typer) -> None:
    app.command("plot")(plot)
