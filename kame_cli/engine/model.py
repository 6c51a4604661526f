"""KAME's front-end LM: moshi's `LMModel` plus the oracle stream's embedding table.

The oracle token of the current step lives in a `[B, 1]` long tensor owned by the LM's streaming
state. `set_oracle_token` overwrites it in place before each step, so a CUDA graph captured over
`forward_text` (moshi's `LMGen` does this) reads the new value on every replay.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from moshi.models.lm import LMModel
from moshi.models.lm_utils import ScaledEmbedding, _init_layer
from moshi.modules.streaming import State

ORACLE_PREFIX = "oracle_emb."
TEXT_EMB_PREFIX = "text_emb."


@dataclass
class _OracleLMState(State):
    oracle_tokens: torch.Tensor
    """`[B, 1]` token ids whose embedding joins the text embedding on the next step."""
    padding_id: int

    def reset(self, reset_mask: torch.Tensor) -> None:
        super().reset(reset_mask)
        padding = torch.full_like(self.oracle_tokens, self.padding_id)
        self.oracle_tokens.copy_(torch.where(reset_mask[:, None], padding, self.oracle_tokens))


class _TextEmbeddingWithOracle(ScaledEmbedding):
    """Moshi's text embedding; while the LM streams, the oracle embedding is added to its output."""

    oracle_term: Callable[[], torch.Tensor | None] | None = None

    def forward(self, input: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        text = super().forward(input, *args, **kwargs)
        oracle = self.oracle_term() if self.oracle_term is not None else None
        # Summed here, before moshi adds the audio embeddings, as the KAME reference does.
        return text if oracle is None else text + oracle


class OracleLMModel(LMModel):
    """Moshi's LM with `oracle_emb` (`text_card + 1` rows) summed with the text-token embedding."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Both tables are built like moshi's own `text_emb`, so released KAME weights load one to one.
        self.text_emb = self._text_table(_TextEmbeddingWithOracle, kwargs)
        self.oracle_emb = self._text_table(ScaledEmbedding, kwargs)
        self.text_emb.oracle_term = self._oracle_embedding

    def _text_table(self, cls: type[ScaledEmbedding], kwargs: dict[str, Any]) -> Any:
        table = cls(
            self.text_card + 1,
            self.dim,
            norm=bool(kwargs.get("norm_emb", False)),
            device=kwargs.get("device"),
            dtype=kwargs.get("dtype"),
            zero_idx=self.zero_token_id,
            demux_second_stream=bool(kwargs.get("demux_second_text_stream", False)),
        )
        if table.weight.device.type != "meta":
            _init_layer(table)
        return table

    def _oracle_embedding(self) -> torch.Tensor | None:
        state = self._streaming_state
        if state is None:
            return None  # whole-sequence forward: no oracle stream, moshi's plain path
        assert isinstance(state, _OracleLMState)
        return self.oracle_emb(state.oracle_tokens)

    def _init_streaming_state(self, batch_size: int) -> _OracleLMState:
        device = self.text_emb.weight.device
        tokens = torch.full((batch_size, 1), self.text_padding_token_id, dtype=torch.long, device=device)
        return _OracleLMState(batch_size, device, tokens, self.text_padding_token_id)

    def set_oracle_token(self, token_id: int) -> None:
        """Set the oracle token that the next streamed step consumes (in place: graph-safe)."""
        state = self._streaming_state
        if state is None:
            raise RuntimeError("set_oracle_token needs a streaming LM: call it inside `lm_gen.streaming()`.")
        assert isinstance(state, _OracleLMState)
        state.oracle_tokens.fill_(token_id)

    def set_oracle_tokens(self, token_ids: torch.Tensor) -> None:
        """Set each row's oracle token for the next streamed step (`[B]` ids; in place: graph-safe)."""
        state = self._streaming_state
        if state is None:
            raise RuntimeError("set_oracle_tokens needs a streaming LM: call it inside `lm_gen.streaming()`.")
        assert isinstance(state, _OracleLMState)
        state.oracle_tokens.copy_(token_ids.view(-1, 1))

    @property
    def oracle_keys(self) -> set[str]:
        """State-dict keys of the oracle table (`oracle_emb.weight`, plus any norm/low-rank ones)."""
        return {f"{ORACLE_PREFIX}{name}" for name in self.oracle_emb.state_dict()}
