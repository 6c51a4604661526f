"""Session commands: `kame talk` and `kame devices`."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def version() -> None:
        """Print kame's version."""
        from kame_cli import __version__

        typer.echo(__version__)
