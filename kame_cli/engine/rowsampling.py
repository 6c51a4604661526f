"""Per-row random streams for moshi's sampling, so batched sessions sample independently.

moshi samples a token as `argmax(probs / q)` with `q` exponential noise drawn from torch's one global
generator for the whole batch: a row's tokens then depend on which other rows share its step. Here
each row owns a `torch.Generator`; before every step the row draws its own noise (the text token's,
then each audio codebook's, the order moshi draws them in at batch 1) into fixed buffers, and
moshi's `sample_token` reads those buffers while a `RowNoise` is active on the stepping thread.

The buffers are filled in place, so a CUDA graph captured over moshi's depth transformer reads the
new noise on every replay. On any other thread, or with no `RowNoise` active, moshi's own sampling
runs unchanged (the single-session loop keeps its global seed).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

_active = threading.local()
_moshi_sample_token: Callable[..., torch.Tensor] | None = None
_install_lock = threading.Lock()


def _row_sample_token(
    logits: torch.Tensor, use_sampling: bool = False, temp: float = 1.0, top_k: int = 0, top_p: float = 0.0
) -> torch.Tensor:
    noise: RowNoise | None = getattr(_active, "noise", None)
    assert _moshi_sample_token is not None
    if noise is None or not use_sampling or temp <= 0.0 or top_p > 0.0:
        return _moshi_sample_token(logits, use_sampling, temp, top_k, top_p)
    return noise.sample(logits, temp, top_k)


def install() -> None:
    """Route moshi's `LMGen` sampling through `_row_sample_token` (idempotent, process-wide)."""
    global _moshi_sample_token
    import moshi.models.lm as lm_module

    with _install_lock:
        if _moshi_sample_token is None:
            _moshi_sample_token = lm_module.sample_token
            lm_module.sample_token = _row_sample_token


class RowNoise:
    """The noise of one step for B rows: one buffer per sampling call (text, then each codebook)."""

    def __init__(self, batch: int, widths: Sequence[int], device: torch.device) -> None:
        """`widths[i]`: how many candidates the i-th sampling call of a step draws noise for."""
        self.batch = batch
        self.widths = tuple(widths)
        # One host and one device tensor, each call's buffer a view: one copy per step to the GPU.
        self._host_all = torch.ones(batch, max(1, sum(self.widths)), dtype=torch.float32)
        self._device_all = self._host_all.to(device)
        self._host = self._views(self._host_all)
        self._device = self._views(self._device_all)
        self._on_host = device.type == "cpu"
        self._cursor = 0

    def _views(self, whole: torch.Tensor) -> list[torch.Tensor]:
        views, start = [], 0
        for width in self.widths:
            views.append(whole[:, start : start + width])
            start += width
        return views

    def draw(self, generators: Sequence[torch.Generator | None]) -> None:
        """Fill every buffer for the coming step; row r draws from `generators[r]` (None: a free row)."""
        for row, generator in enumerate(generators):
            if generator is None:
                continue  # a free row's tokens are never used: its stale noise costs nothing
            for buffer in self._host:
                buffer[row].exponential_(1.0, generator=generator)
        if not self._on_host:
            self._device_all.copy_(self._host_all)
        self._cursor = 0

    def sample(self, logits: torch.Tensor, temp: float, top_k: int) -> torch.Tensor:
        """moshi's top-k sampling (`[B, ..., card]` logits -> `[B, ...]` tokens) with this row noise."""
        if self._cursor >= len(self._device):
            raise RuntimeError(f"more sampling calls in one step than the {len(self._device)} expected")
        noise = self._device[self._cursor]
        self._cursor += 1
        probs = torch.softmax(logits / temp, dim=-1)
        indices: torch.Tensor | None = None
        if top_k > 0:
            probs, indices = torch.topk(probs, min(top_k, probs.shape[-1]), dim=-1)
        if probs.shape[0] != self.batch or probs.shape[-1] != noise.shape[-1]:
            raise RuntimeError(f"sampling over {tuple(probs.shape)}, noise drawn for {tuple(noise.shape)}")
        flat = probs.reshape(self.batch, -1, probs.shape[-1])
        choice = (flat / noise[:, None, :]).argmax(dim=-1, keepdim=True).reshape(*probs.shape[:-1], 1)
        if indices is not None:
            choice = indices.gather(-1, choice)
        return choice[..., 0]

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Make moshi's sampling on this thread read this noise."""
        previous = getattr(_active, "noise", None)
        _active.noise = self
        try:
            yield
        finally:
            _active.noise = previous


def sampling_widths(lm_gen: Any) -> list[int]:
    """The candidates each sampling call of one `LMGen` step draws noise for: text, then codebooks.

    A greedy call (no sampling, or temperature 0) draws nothing and has no buffer."""
    lm = lm_gen.lm_model

    def width(top_k: int, card: int) -> int:
        return min(top_k, card) if top_k > 0 else card

    widths: list[int] = []
    if lm_gen.use_sampling and lm_gen.temp_text > 0.0:
        widths.append(width(lm_gen.top_k_text, lm.text_linear.out_features))
    if lm_gen.use_sampling and lm_gen.temp > 0.0:
        widths.extend(width(lm_gen.top_k, linear.out_features) for linear in lm.linears[: lm.dep_q])
    return widths
