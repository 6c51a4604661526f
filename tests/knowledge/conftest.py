"""The test documents, indexed once per module where a test only reads the index."""

from __future__ import annotations

from pathlib import Path

import pytest

from kame_cli.knowledge.config import KnowledgeConfig
from kame_cli.knowledge.index import KnowledgeIndex, refresh
from tests.knowledge.documents import write_documents


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> tuple[KnowledgeConfig, KnowledgeIndex]:
    """The four test documents, indexed with FTS5 (no embeddings)."""
    root = tmp_path_factory.mktemp("knowledge")
    docs = write_documents(root)
    config = KnowledgeConfig(documents=(str(docs / "**" / "*"),), index=str(root / "index.sqlite"))
    refresh(config)
    return config, KnowledgeIndex(Path(str(config.index)))


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    """A fresh copy of the test documents that a test may change."""
    return write_documents(tmp_path)
