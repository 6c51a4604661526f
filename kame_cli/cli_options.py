"""Command-line options that several commands take, declared once so that they read the same everywhere.

Each is a typed `Annotated` alias; a command declares `profile: ProfileOption = None`.
"""

from __future__ import annotations

from typing import Annotated

import typer

ProfileOption = Annotated[
    str | None, typer.Option("--profile", "-p", help="Profile name or TOML path (default: ollama).")
]
ModelOption = Annotated[
    str | None,
    typer.Option(help="Front-end: HF repo id, local checkpoint dir, random:tiny or random:7b."),
]
DeviceOption = Annotated[
    str | None, typer.Option(help="Compute device for the front-end: auto, cuda or cpu.")
]
QuantizeOption = Annotated[
    str | None,
    typer.Option(
        "--quantize", "-q", help="int8: the front-end's linear layers in int8 (12-16 GB GPUs), or none."
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")]
