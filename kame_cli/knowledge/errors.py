"""The knowledge part's errors: a bad document path is bad input (exit 2); an embedding server
that fails while an index is built is a runtime failure (exit 1)."""

from __future__ import annotations

from kame_cli.errors import KameError, RuntimeFailure


class KnowledgeError(KameError):
    """A `[knowledge]` document or index that cannot be used: one line naming it and the fix."""


class EmbeddingFailure(RuntimeFailure):
    """The embedding model did not answer while passages were embedded."""
