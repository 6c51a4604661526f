"""Embeddings through LiteLLM (`[knowledge] embedding_model`): passages when the index is built,
the user's words at each request. Vectors are unit length, float32, so a dot product is the cosine."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from kame_cli.knowledge.config import KnowledgeConfig
from kame_cli.knowledge.errors import EmbeddingFailure, KnowledgeError

if TYPE_CHECKING:
    import numpy as np

BATCH = 64
"""Passages per embedding call while the index is built."""


def _kwargs(config: KnowledgeConfig) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"model": config.embedding_model, "max_retries": 0}
    if config.embedding_api_base:
        kwargs["api_base"] = config.embedding_api_base
    name = config.embedding_api_key_env
    if name:
        key = os.environ.get(name)
        if not key:
            raise KnowledgeError(
                f"[knowledge] embedding_api_key_env: environment variable {name} is not set: "
                f"export {name}=... before starting kame"
            )
        kwargs["api_key"] = key
    elif config.embedding_api_base:
        kwargs["api_key"] = "no-key"  # OpenAI-style clients send none without one; local servers ignore it
    return kwargs


def _unit(rows: Sequence[Sequence[float]]) -> np.ndarray:
    import numpy as np

    matrix = np.asarray(rows, dtype=np.float32)
    if matrix.ndim != 2 or not np.isfinite(matrix).all():
        raise EmbeddingFailure("the embedding model answered something that is not a list of vectors")
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)


def _vectors(response: Any) -> list[list[float]]:
    data = sorted(response.data, key=lambda item: item["index"] if isinstance(item, dict) else item.index)
    return [item["embedding"] if isinstance(item, dict) else item.embedding for item in data]


def embed_passages(config: KnowledgeConfig, texts: Sequence[str]) -> np.ndarray:
    """Unit vectors for `texts` (in batches); EmbeddingFailure, one line, if the model fails."""
    import numpy as np

    from kame_cli.backends.oracle.llm import import_litellm

    litellm = import_litellm()
    kwargs = _kwargs(config)
    rows: list[list[float]] = []
    for start in range(0, len(texts), BATCH):
        try:
            response = litellm.embedding(input=list(texts[start : start + BATCH]), timeout=60.0, **kwargs)
        except Exception as err:  # LiteLLM's many error types: the line says which and where
            raise EmbeddingFailure(
                f"[knowledge] embedding_model {config.embedding_model}: {type(err).__name__}: "
                f"{' '.join(str(err).split())[:160]}"
            ) from None
        rows.extend(_vectors(response))
    if len(rows) != len(texts):
        raise EmbeddingFailure(f"the embedding model answered {len(rows)} vectors for {len(texts)} passages")
    return _unit(rows) if rows else np.zeros((0, 0), dtype=np.float32)


async def embed_query(config: KnowledgeConfig, text: str) -> np.ndarray:
    """The unit vector of the user's words (one call; the caller bounds its time)."""
    from kame_cli.backends.oracle.llm import import_litellm

    litellm = import_litellm()
    response = await litellm.aembedding(
        input=[text], timeout=max(config.timeout_ms / 1000.0, 0.5), **_kwargs(config)
    )
    return _unit(_vectors(response))[0]
