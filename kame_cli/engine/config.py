"""Front-end settings, as read from a profile's `[frontend]` table (CLI flags override them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class FrontendConfig:
    """Which front-end checkpoint to run, where, and how it samples."""

    model: str = "SakanaAI/kame"
    """A Hugging Face repo id, a local checkpoint directory, `random:tiny` or `random:7b`."""
    device: Literal["auto", "cuda", "cpu"] = "auto"
    half: bool = False
    """fp16 instead of bf16 on CUDA (GPUs older than Ampere)."""
    lm_weights: str | None = None
    mimi_weights: str | None = None
    tokenizer: str | None = None
    config: str | None = None
    temperature: float = 0.8
    temperature_text: float = 0.7
    top_k: int = 250
    top_k_text: int = 25
    seed: int | None = None
    revision: str | None = None
    """Hugging Face revision (branch, tag or commit) of a repo-id model; None: the default branch."""
    cpu_threads: int = 1
    """torch intra-op threads on CPU: 1 measured best on 2 cores while the STT worker also runs."""
