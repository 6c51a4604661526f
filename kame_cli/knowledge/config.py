"""`[knowledge]`: the documents the oracle may draw on, and the budgets of retrieval."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator, Field

from kame_cli.backends.oracle.config import _env_name, _http_url, _not_a_key
from kame_cli.settings import SETTINGS, not_blank

DocumentPattern = Annotated[str, Field(max_length=1024), AfterValidator(not_blank)]


@dataclass(frozen=True, slots=True)
class KnowledgeConfig:
    """The user's documents: passages the user's words retrieve go into each oracle request with
    their source (see docs/knowledge.md). No `documents`: no retrieval."""

    __pydantic_config__ = SETTINGS

    documents: tuple[DocumentPattern, ...] = ()
    """Files and globs (`**` reaches into subfolders) of Markdown (`.md`), text (`.txt`), PDF and
    HTML, relative to the profile file or absolute. A pattern that matches nothing, a file that
    cannot be read or is of another type is refused (exit 2)."""
    index: Annotated[str, Field(max_length=1024), AfterValidator(not_blank)] | None = None
    """The SQLite index file (relative to the profile file or absolute); unset: one per profile
    under kame's cache (`$KAME_CACHE_DIR`, else `~/.cache/kame`) in `knowledge/`."""
    top_k: Annotated[int, Field(ge=1, le=50)] = 3
    """Most passages that go into one request."""
    max_prompt_chars: Annotated[int, Field(ge=100, le=200_000)] = 2000
    """Bound on the reference notes' characters in one request (passages in rank order, the last
    one that fits; a first passage longer than this is cut at a word)."""
    timeout_ms: Annotated[float, Field(ge=1, le=60_000)] = 250.0
    """Bound on one retrieval: past it the request goes out with what was found (the BM25 passages
    when the embedding call is late, none when the index itself is)."""
    passage_chars: Annotated[int, Field(ge=200, le=20_000)] = 700
    """Target length of a passage: sections longer than this are cut at paragraph, then sentence
    boundaries."""
    embedding_model: (
        Annotated[str, Field(max_length=256), AfterValidator(not_blank), AfterValidator(_not_a_key)] | None
    ) = None
    """A LiteLLM embedding model (`ollama/nomic-embed-text`, `openai/text-embedding-3-small`, ...):
    passages and queries are embedded too and the two rankings are fused (reciprocal rank). Unset:
    BM25 alone, offline, no model."""
    embedding_api_base: Annotated[str, Field(max_length=2048), AfterValidator(_http_url)] | None = None
    """The embedding server's http(s) URL; None: the provider's own."""
    embedding_api_key_env: Annotated[str, Field(max_length=128), AfterValidator(_env_name)] | None = None
    """Name of the environment variable holding the embedding provider's key."""
