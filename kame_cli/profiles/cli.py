"""`kame profiles`: list, show and check profiles (placeholder until the oracle back-end lands)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    return None
