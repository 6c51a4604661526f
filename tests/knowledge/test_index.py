"""The documents' FTS5 index: every type read with its source, answers found in the one document
that holds them, the same order every time, and only changed files read again."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from kame_cli.bus import EventBus
from kame_cli.clock import SessionClock
from kame_cli.knowledge.config import KnowledgeConfig
from kame_cli.knowledge.index import KnowledgeIndex, refresh
from kame_cli.knowledge.query import fts_query, query_terms
from kame_cli.knowledge.retriever import Retriever

QUESTIONS = {
    "how many days do I have to return the kettle": "handbook.md > Acme handbook > Returns",
    "which warehouse do orders ship from": "handbook.md > Acme handbook > Shipping",
    "what time does the support line open on saturday": "support.txt",
    "how long is the toaster warranty": "warranty.html > Warranty",
    "what is the flagship blender called": "sheets/blender.pdf > page 1",
}


@pytest.mark.parametrize(("question", "source"), QUESTIONS.items())
def test_a_question_finds_the_one_document_that_answers_it(
    indexed: tuple[KnowledgeConfig, KnowledgeIndex], question: str, source: str
) -> None:
    _, index = indexed
    hits = index.search(fts_query(question), 3)
    assert hits, f"nothing found for {question!r}"
    assert hits[0].passage.source == source


def test_every_type_is_read_as_text(indexed: tuple[KnowledgeConfig, KnowledgeIndex]) -> None:
    _, index = indexed
    texts = {h.passage.source: h.passage.text for h in index.search(fts_query("typhoon toaster kettle"), 10)}
    assert "Typhoon" in texts["sheets/blender.pdf > page 1"]  # the PDF's text, through pypdf
    assert "seven years" in texts["warranty.html > Warranty"]
    assert not index.search(fts_query("hidden"), 3), "a <script>'s text was indexed"


def test_the_same_words_give_the_same_passages_in_the_same_order(
    indexed: tuple[KnowledgeConfig, KnowledgeIndex], tmp_path: Path
) -> None:
    config, index = indexed
    words = "support warranty return orders blender weekday"
    first = [h.passage for h in index.search(fts_query(words), 5)]
    assert len(first) == 5
    assert [h.passage for h in index.search(fts_query(words), 5)] == first
    # A second index built from the same files (a restart with a fresh cache) orders them alike.
    again = KnowledgeConfig(documents=config.documents, index=str(tmp_path / "again.sqlite"))
    refresh(again)
    assert [h.passage for h in KnowledgeIndex(tmp_path / "again.sqlite").search(fts_query(words), 5)] == first


@pytest.mark.parametrize(
    "said",
    ['what "about', "returns AND OR NOT", "kettle*", "NEAR(kettle returns)", "-kettle ^returns:", "'; DROP"],
)
def test_what_the_user_says_is_never_query_syntax(
    indexed: tuple[KnowledgeConfig, KnowledgeIndex], said: str
) -> None:
    _, index = indexed
    index.search(fts_query(said), 3)  # sqlite3.OperationalError here would be a syntax error


def test_stop_words_and_fillers_do_not_count() -> None:
    assert query_terms("Um, what is the, uh, RETURN policy for the kettle?") == ["return", "policy", "kettle"]
    assert fts_query("what is it") == ""


def _config(docs: Path, index: Path) -> KnowledgeConfig:
    return KnowledgeConfig(documents=(str(docs / "*.md"), str(docs / "*.txt")), index=str(index))


def test_a_changed_document_is_indexed_again_and_an_unchanged_one_is_not(docs: Path, tmp_path: Path) -> None:
    config = _config(docs, tmp_path / "index.sqlite")
    assert sorted(refresh(config).indexed) == ["handbook.md", "support.txt"]
    assert refresh(config).indexed == []
    handbook = docs / "handbook.md"
    handbook.write_text(handbook.read_text().replace("45 days", "90 days"), encoding="utf-8")
    report = refresh(config)
    assert report.indexed == ["handbook.md"]
    index = KnowledgeIndex(tmp_path / "index.sqlite")
    (hit,) = index.search(fts_query("return kettle days"), 1)
    assert "90 days" in hit.passage.text
    assert not index.search(fts_query("45"), 3), "the old text stayed in the index"
    # A new mtime on the same bytes: hashed, not read and cut again.
    info = handbook.stat()
    os.utime(handbook, ns=(info.st_atime_ns, info.st_mtime_ns + 5_000_000_000))
    assert refresh(config).indexed == []


def test_a_document_no_longer_named_leaves_the_index(docs: Path, tmp_path: Path) -> None:
    config = _config(docs, tmp_path / "index.sqlite")
    refresh(config)
    (docs / "support.txt").unlink()
    config = KnowledgeConfig(documents=(str(docs / "*.md"),), index=config.index)
    report = refresh(config)
    assert report.removed == ["support.txt"]
    assert (report.files, report.indexed) == (1, [])
    assert not KnowledgeIndex(tmp_path / "index.sqlite").search(fts_query("support line saturday"), 3)


def test_an_index_damaged_under_a_session_gives_no_notes_and_says_so(docs: Path, tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite"
    config = KnowledgeConfig(documents=(str(docs / "**" / "*"),), index=str(path))
    refresh(config)
    retriever = Retriever(config, KnowledgeIndex(path), events=EventBus(), clock=SessionClock())
    passages, outcome = asyncio.run(retriever.find("return the kettle"))
    assert passages and outcome == "ok"
    path.write_bytes(bytes(4 * 4096))  # the file overwritten while the session runs
    assert asyncio.run(retriever.find("return the kettle")) == ([], "failed")
