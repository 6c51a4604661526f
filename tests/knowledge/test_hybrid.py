"""Hybrid ranking with an embedding model through LiteLLM (a wire-level fake endpoint on loopback):
meaning found where the words differ, the same order every time, BM25 alone when the model is late."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from kame_cli.bus import EventBus
from kame_cli.clock import SessionClock
from kame_cli.knowledge.config import KnowledgeConfig
from kame_cli.knowledge.index import KnowledgeIndex, refresh
from kame_cli.knowledge.retriever import Retriever
from tests.knowledge.documents import write_documents
from tests.knowledge.embeddings import FakeEmbeddings


@pytest.fixture(scope="module")
def embeddings() -> Iterator[FakeEmbeddings]:
    with FakeEmbeddings() as server:
        yield server


@pytest.fixture(scope="module")
def hybrid(tmp_path_factory: pytest.TempPathFactory, embeddings: FakeEmbeddings) -> KnowledgeConfig:
    root = tmp_path_factory.mktemp("hybrid")
    docs = write_documents(root)
    config = KnowledgeConfig(
        documents=(str(docs / "**" / "*"),),
        index=str(root / "index.sqlite"),
        embedding_model="openai/fake-embed",
        embedding_api_base=embeddings.api_base,
        timeout_ms=5000.0,
    )
    refresh(config)
    return config


def _find(config: KnowledgeConfig, text: str) -> tuple[list[str], str]:
    retriever = Retriever(
        config, KnowledgeIndex(Path(str(config.index))), events=EventBus(), clock=SessionClock()
    )
    passages, outcome = asyncio.run(retriever.find(text))
    return [p.source for p in passages], outcome


def test_the_index_holds_a_vector_per_passage(hybrid: KnowledgeConfig, embeddings: FakeEmbeddings) -> None:
    index = KnowledgeIndex(Path(str(hybrid.index)))
    assert index.vectors is not None and len(index.ids) == index.vectors.shape[0] >= 5
    bodies = [body for _, path, body in embeddings.requests if path.endswith("/embeddings")]
    assert bodies[0]["model"] == "fake-embed" and len(bodies[0]["input"]) == len(index.ids)


def test_meaning_is_found_where_no_word_matches(hybrid: KnowledgeConfig) -> None:
    # "reimbursement" is in no document: BM25 finds nothing, the embedding finds the refund.
    sources, outcome = _find(hybrid, "can I get a reimbursement")
    assert outcome == "ok"
    assert sources[0] == "handbook.md > Acme handbook > Returns"


def test_the_same_words_give_the_same_passages_and_one_embedding_call(
    hybrid: KnowledgeConfig, embeddings: FakeEmbeddings
) -> None:
    retriever = Retriever(
        hybrid, KnowledgeIndex(Path(str(hybrid.index))), events=EventBus(), clock=SessionClock()
    )

    async def twice() -> tuple[list[str], list[str]]:
        first, _ = await retriever.find("the toaster warranty and shipping days")
        calls = embeddings.calls()
        second, _ = await retriever.find("the toaster warranty and shipping days")
        assert embeddings.calls() == calls, "the query's vector was asked for again"
        return [p.source for p in first], [p.source for p in second]

    first, second = asyncio.run(twice())
    assert first == second and len(first) == 3


def test_a_late_embedding_model_leaves_bm25_s_passages(
    hybrid: KnowledgeConfig, embeddings: FakeEmbeddings
) -> None:
    embeddings.delay_s = 2.0
    try:
        import dataclasses

        sources, outcome = _find(
            dataclasses.replace(hybrid, timeout_ms=150.0), "how long is the toaster warranty"
        )
    finally:
        embeddings.delay_s = 0.0
    assert outcome == "timeout"
    assert sources[0] == "warranty.html > Warranty"
