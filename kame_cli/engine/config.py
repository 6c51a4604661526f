"""Front-end settings, as read from a profile's `[frontend]` table (CLI flags override them).

Range checks live in each field's metadata (`ge`, `gt`, `choices`, `nonempty`), so the profile
loader reports the file and key at fault without knowing this class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from kame_cli.errors import ConfigError

QUANTIZE_CHOICES = ("none", "int8")


@dataclass(frozen=True, slots=True)
class FrontendConfig:
    """Which front-end checkpoint to run, where, and how it samples."""

    model: str = field(default="SakanaAI/kame", metadata={"nonempty": True})
    """A Hugging Face repo id, a local checkpoint directory, `random:tiny` or `random:7b`."""
    device: Literal["auto", "cuda", "cpu"] = "auto"
    half: bool = False
    """fp16 instead of bf16 on CUDA (GPUs older than Ampere)."""
    lm_weights: str | None = field(default=None, metadata={"nonempty": True})
    mimi_weights: str | None = field(default=None, metadata={"nonempty": True})
    tokenizer: str | None = field(default=None, metadata={"nonempty": True})
    config: str | None = field(default=None, metadata={"nonempty": True})
    temperature: float | None = field(default=None, metadata={"ge": 0, "le": 100})
    """Audio sampling temperature; None: the checkpoint's `lm_gen_config`, else moshi's 0.8."""
    temperature_text: float | None = field(default=None, metadata={"ge": 0, "le": 100})
    """Text sampling temperature; None: the checkpoint's, else 0.7."""
    top_k: int | None = field(default=None, metadata={"ge": 1, "le": 1 << 20})
    """None: the checkpoint's, else 250."""
    top_k_text: int | None = field(default=None, metadata={"ge": 1, "le": 1 << 20})
    """None: the checkpoint's, else 25."""
    seed: int | None = field(default=None, metadata={"ge": 0, "le": 2**32 - 1})
    """The same range as `--seed` (numpy's and the reference's seeding take 32 bits)."""
    revision: str | None = field(default=None, metadata={"nonempty": True})
    """Hugging Face revision (branch, tag or commit) of a repo-id model; None: the default branch."""
    cpu_threads: int = field(default=1, metadata={"ge": 1, "le": 256})
    """torch intra-op threads on CPU: 1 measured best on 2 cores while the STT worker also runs."""
    max_lag_ms: float = field(default=240.0, metadata={"ge": 80, "le": 60_000})
    """Live input only: when the loop falls further behind the user than this, it drops the oldest
    frames (counted, with a `degraded` status) instead of answering later and later. `--fast` file
    runs are lossless and ignore it."""
    quantize: str = field(default="none", metadata={"choices": QUANTIZE_CHOICES})
    """`int8`: the LM's linear layers in int8 (moshi's bitsandbytes path, CUDA only), for 12-16 GB GPUs;
    `-q8` checkpoints are int8 already."""


def quantize_flag(value: str | None) -> str | None:
    """The `--quantize` value checked (None: keep the profile's); a bad one is a ConfigError."""
    if value is None or value in QUANTIZE_CHOICES:
        return value
    raise ConfigError(f"--quantize {value}: expected {' or '.join(QUANTIZE_CHOICES)}")
