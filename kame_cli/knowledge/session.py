"""`[knowledge]` in a session: its documents checked before anything starts, its index made or
refreshed in the back-end process before the oracle starts, and the retriever the producer uses."""

from __future__ import annotations

from collections.abc import Callable

from kame_cli.bus import EventSink
from kame_cli.clock import SessionClock
from kame_cli.knowledge.config import KnowledgeConfig
from kame_cli.knowledge.errors import KnowledgeError
from kame_cli.knowledge.index import KnowledgeIndex, RefreshReport, default_index_path, refresh
from kame_cli.knowledge.retriever import Retriever
from kame_cli.knowledge.sources import resolve_documents


def check_documents(config: KnowledgeConfig, where: str) -> None:
    """KnowledgeError (one line naming the profile `where`, exit 2) if a document pattern matches
    nothing or names a folder, an unsupported type or an unreadable file; nothing is read or written."""
    if not config.documents:
        return
    try:
        resolve_documents(config.documents)
    except KnowledgeError as err:
        raise KnowledgeError(f"{where}: {err}") from None


def prepare_index(config: KnowledgeConfig, say: Callable[[str], None]) -> RefreshReport:
    """Bring the index up to date, telling `say` what is read when something is (an unchanged
    index costs a stat per document and says nothing)."""

    def progress(done: int, total: int, name: str) -> None:
        if name:
            say(f"knowledge: indexing {name} ({done + 1} of {total})")

    report = refresh(config, progress=progress)
    if report.indexed or report.removed:
        say(
            f"knowledge: index ready: {report.files} documents, {report.passages} passages "
            f"({len(report.indexed)} read, {len(report.removed)} dropped) in {report.seconds:.1f} s"
        )
    return report


def open_retriever(config: KnowledgeConfig, *, events: EventSink, clock: SessionClock) -> Retriever:
    """The retriever over the (already prepared) index of `config`."""
    return Retriever(config, KnowledgeIndex(default_index_path(config)), events=events, clock=clock)
