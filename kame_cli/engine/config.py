"""Front-end settings, as read from a profile's `[frontend]` table (CLI flags override them).

Each field declares its own type, bounds and documentation (see `kame_cli.settings`).
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field

from kame_cli.errors import ConfigError
from kame_cli.settings import SETTINGS, NonEmpty

Quantize = Literal["none", "int8"]
QUANTIZE_CHOICES: tuple[str, ...] = typing.get_args(Quantize)


@dataclass(frozen=True, slots=True)
class FrontendConfig:
    """Which front-end checkpoint to run, where, and how it samples."""

    __pydantic_config__ = SETTINGS

    model: NonEmpty = "SakanaAI/kame"
    """A Hugging Face repo id, a local checkpoint directory, `random:tiny` or `random:7b`."""
    device: Literal["auto", "cuda", "cpu"] = "auto"
    """`auto`: CUDA when torch sees a GPU, else the CPU."""
    half: bool = False
    """fp16 instead of bf16 on CUDA (GPUs older than Ampere)."""
    lm_weights: NonEmpty | None = None
    """The LM weights file, in place of the one `model`'s `config.json` names (offline loading)."""
    mimi_weights: NonEmpty | None = None
    """The Mimi codec weights file, in place of the one `model`'s `config.json` names."""
    tokenizer: NonEmpty | None = None
    """The text tokenizer (sentencepiece) file, in place of the one `model`'s `config.json` names."""
    config: NonEmpty | None = None
    """A `config.json` in the format of Moshi's and KAME's repos, in place of `model`'s own."""
    temperature: Annotated[float, Field(ge=0, le=100)] | None = None
    """Audio sampling temperature; None: the checkpoint's `lm_gen_config`, else moshi's 0.8."""
    temperature_text: Annotated[float, Field(ge=0, le=100)] | None = None
    """Text sampling temperature; None: the checkpoint's, else 0.7."""
    top_k: Annotated[int, Field(ge=1, le=1 << 20)] | None = None
    """None: the checkpoint's, else 250."""
    top_k_text: Annotated[int, Field(ge=1, le=1 << 20)] | None = None
    """None: the checkpoint's, else 25."""
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] | None = None
    """The same range as `--seed` (numpy's and the reference's seeding take 32 bits)."""
    revision: NonEmpty | None = None
    """Hugging Face revision (branch, tag or commit) of a repo-id model; None: the default branch."""
    cpu_threads: Annotated[int, Field(ge=1, le=256)] = 1
    """torch intra-op threads on CPU: 1 measured best on 2 cores while the STT worker also runs."""
    max_lag_ms: Annotated[float, Field(ge=80, le=60_000)] = 240.0
    """Live input only: when the loop falls further behind the user than this, it drops the oldest
    frames (counted, with a `degraded` status) instead of answering later and later. `--fast` file
    runs are lossless and ignore it."""
    quantize: Quantize = "none"
    """`int8`: the LM's linear layers in int8 (moshi's bitsandbytes path, CUDA only), for 12-16 GB GPUs;
    `-q8` checkpoints are int8 already."""


def quantize_flag(value: str | None) -> str | None:
    """The `--quantize` value checked (None: keep the profile's); a bad one is a ConfigError."""
    if value is None or value in QUANTIZE_CHOICES:
        return value
    raise ConfigError(f"--quantize {value}: expected {' or '.join(QUANTIZE_CHOICES)}")
