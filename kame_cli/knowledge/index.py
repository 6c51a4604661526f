"""The documents' index: one SQLite file with an FTS5 table of passages (BM25 ranking), the files
it was built from (path, size, mtime, content hash) and, with an embedding model, a vector per
passage.

`refresh` re-reads only what changed: a file whose size and mtime are as recorded is not opened, one
whose content hash is unchanged is not re-cut. Everything is read (and embedded) before anything is
written, so a bad document leaves the index as it was; a new index is built beside its place and
moved there whole.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from kame_cli.errors import printable
from kame_cli.knowledge.config import KnowledgeConfig
from kame_cli.knowledge.errors import KnowledgeError
from kame_cli.knowledge.loaders import read_document
from kame_cli.knowledge.passages import Passage, cut
from kame_cli.knowledge.sources import Document, resolve_documents

if TYPE_CHECKING:
    import numpy as np

SCHEMA = 1
Progress = Callable[[int, int, str], None]
"""Called with (documents read, documents to read, the one being read now; "" at the end) while an
index is refreshed; not called when no document needs reading."""

_TABLES = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE files (path TEXT PRIMARY KEY, name TEXT NOT NULL, size INTEGER NOT NULL,
                    mtime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL);
CREATE VIRTUAL TABLE passages USING fts5(
    text, heading, document UNINDEXED, path UNINDEXED, ordinal UNINDEXED,
    tokenize = 'porter unicode61 remove_diacritics 2');
CREATE TABLE vectors (id INTEGER PRIMARY KEY, vector BLOB NOT NULL);
"""


def default_index_path(config: KnowledgeConfig) -> Path:
    """`[knowledge] index`, else a file under kame's cache named by the documents' patterns."""
    if config.index is not None:
        return Path(config.index)
    from kame_cli.backends.oracle.requant import cache_dir

    digest = hashlib.sha256(json.dumps(list(config.documents)).encode()).hexdigest()[:16]
    return cache_dir() / "knowledge" / f"documents-{digest}.sqlite"


def _settings(config: KnowledgeConfig) -> str:
    # What the passages and vectors depend on: a change rebuilds the whole index.
    return json.dumps(
        {"schema": SCHEMA, "passage_chars": config.passage_chars, "embedding": config.embedding_model}
    )


@dataclass
class RefreshReport:
    """What a refresh did."""

    index: Path
    files: int = 0
    passages: int = 0
    indexed: list[str] = field(default_factory=list)
    """Documents (re-)read and cut into passages."""
    removed: list[str] = field(default_factory=list)
    """Documents no longer named by the profile, dropped from the index."""
    rebuilt: bool = False
    seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "index": str(self.index),
            "files": self.files,
            "passages": self.passages,
            "indexed": self.indexed,
            "removed": self.removed,
            "rebuilt": self.rebuilt,
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True, slots=True)
class _Recorded:
    name: str
    size: int
    mtime_ns: int
    sha256: str


@dataclass(frozen=True, slots=True)
class _Update:
    document: Document
    size: int
    mtime_ns: int
    sha256: str
    passages: list[Passage] | None
    """None: the content is unchanged (only its size/mtime record is renewed)."""


def refresh(
    config: KnowledgeConfig, *, path: Path | None = None, progress: Progress | None = None
) -> RefreshReport:
    """Bring the index of `config.documents` up to date; KnowledgeError (exit 2) for a bad document
    or index path, EmbeddingFailure (exit 1) if the embedding model fails. Nothing is written then."""
    started = time.perf_counter()
    target = path if path is not None else default_index_path(config)
    documents = resolve_documents(config.documents)
    recorded, same_settings = _read_records(target, config)
    updates: list[_Update] = []
    to_read: list[tuple[Document, int, int, str]] = []
    for document in documents:
        before = recorded.get(str(document.path)) if same_settings else None
        checked = _check(document, before)
        if isinstance(checked, _Update):
            updates.append(checked)
        elif checked is not None:
            to_read.append((document, *checked))
    for number, (document, size, mtime_ns, digest) in enumerate(to_read):
        if progress is not None:
            progress(number, len(to_read), document.name)
        passages = cut(document.name, read_document(document.path), config.passage_chars)
        updates.append(_Update(document, size, mtime_ns, digest, passages))
    if progress is not None and to_read:
        progress(len(to_read), len(to_read), "")
    wanted = {str(d.path) for d in documents}
    removed = sorted(p for p in recorded if p not in wanted) if same_settings else []
    new_passages = [p for u in updates if u.passages is not None for p in u.passages]
    vectors = None
    if config.embedding_model is not None and new_passages:
        from kame_cli.knowledge.embed import embed_passages

        vectors = embed_passages(config, [f"{p.source}\n{p.text}" for p in new_passages])
    report = RefreshReport(target, rebuilt=not same_settings)
    if updates or removed or not target.exists():
        _write(
            target,
            config,
            updates,
            removed,
            recorded if same_settings else {},
            vectors,
            fresh=not same_settings,
        )
    report.indexed = [u.document.name for u in updates if u.passages is not None]
    report.removed = [recorded[p].name for p in removed]
    report.files, report.passages = _counts(target)
    report.seconds = time.perf_counter() - started
    return report


def _check(document: Document, before: _Recorded | None) -> _Update | tuple[int, int, str] | None:
    """None: unchanged; an `_Update` without passages: the same bytes under a new size/mtime
    record; else (size, mtime, hash) of a document to read."""
    try:
        info = document.path.stat()
    except OSError as err:
        raise KnowledgeError(
            f"[knowledge] documents: {printable(str(document.path))} cannot be read ({err.strerror}): "
            "fix the path or its permissions"
        ) from None
    if before is not None and before.size == info.st_size and before.mtime_ns == info.st_mtime_ns:
        return None
    digest = _sha256(document.path)
    if before is not None and before.sha256 == digest:
        return _Update(document, info.st_size, info.st_mtime_ns, digest, None)
    return info.st_size, info.st_mtime_ns, digest


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
    except OSError as err:
        raise KnowledgeError(
            f"{printable(str(path))}: cannot be read ({err.strerror}): fix its permissions"
        ) from None
    return digest.hexdigest()


@contextlib.contextmanager
def _connect(path: Path, *, read_only: bool) -> Iterator[sqlite3.Connection]:
    uri = f"{path.resolve().as_uri()}?mode={'ro' if read_only else 'rwc'}"
    try:
        connection = sqlite3.connect(uri, uri=True, timeout=30.0)
    except sqlite3.Error as err:
        raise KnowledgeError(_index_problem(path, err)) from None
    try:
        yield connection
    except sqlite3.DatabaseError as err:
        raise KnowledgeError(_index_problem(path, err)) from None
    finally:
        connection.close()


def _index_problem(path: Path, err: Exception) -> str:
    return (
        f"[knowledge] index {printable(str(path))}: {err}: not a usable kame index; delete it "
        "(`kame knowledge index` rebuilds it) or set [knowledge] index elsewhere"
    )


def _read_records(path: Path, config: KnowledgeConfig) -> tuple[dict[str, _Recorded], bool]:
    """The files the index at `path` was built from, and whether it was built with these settings."""
    if not path.exists():
        return {}, False
    with _connect(path, read_only=True) as db:
        row = db.execute("SELECT value FROM meta WHERE key = 'settings'").fetchone()
        if row is None or row[0] != _settings(config):
            return {}, False
        rows = db.execute("SELECT path, name, size, mtime_ns, sha256 FROM files").fetchall()
    return {p: _Recorded(n, s, m, h) for p, n, s, m, h in rows}, True


def _write(
    target: Path,
    config: KnowledgeConfig,
    updates: Sequence[_Update],
    removed: Sequence[str],
    recorded: dict[str, _Recorded],
    vectors: np.ndarray | None,
    *,
    fresh: bool,
) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise KnowledgeError(
            f"[knowledge] index {printable(str(target))}: its folder cannot be made ({err.strerror}): "
            "set [knowledge] index or KAME_CACHE_DIR to a writable place"
        ) from None
    place = target.with_name(f".{target.name}.{os.getpid()}.tmp") if fresh else target
    try:
        with _connect(place, read_only=False) as db:
            if fresh:
                db.executescript(_TABLES)
                db.execute("INSERT INTO meta VALUES ('settings', ?)", (_settings(config),))
            with db:  # one transaction: the index changes whole or not at all
                _apply(db, updates, removed, vectors)
        if fresh:
            os.replace(place, target)
    except OSError as err:
        raise KnowledgeError(
            f"[knowledge] index {printable(str(target))}: cannot be written ({err.strerror}): "
            "set [knowledge] index or KAME_CACHE_DIR to a writable place"
        ) from None
    finally:
        if fresh:
            with contextlib.suppress(FileNotFoundError):
                place.unlink()


def _apply(
    db: sqlite3.Connection, updates: Sequence[_Update], removed: Sequence[str], vectors: np.ndarray | None
) -> None:
    changed = [str(u.document.path) for u in updates if u.passages is not None]
    for path in [*removed, *changed]:
        db.execute("DELETE FROM vectors WHERE id IN (SELECT rowid FROM passages WHERE path = ?)", (path,))
        db.execute("DELETE FROM passages WHERE path = ?", (path,))
    for path in removed:
        db.execute("DELETE FROM files WHERE path = ?", (path,))
    row = 0
    for update in updates:
        key = str(update.document.path)
        db.execute(
            "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?)",
            (key, update.document.name, update.size, update.mtime_ns, update.sha256),
        )
        for ordinal, passage in enumerate(update.passages or ()):
            cursor = db.execute(
                "INSERT INTO passages (text, heading, document, path, ordinal) VALUES (?, ?, ?, ?, ?)",
                (passage.text, passage.heading, passage.document, key, ordinal),
            )
            if vectors is not None:
                db.execute("INSERT INTO vectors VALUES (?, ?)", (cursor.lastrowid, vectors[row].tobytes()))
            row += 1


def _counts(path: Path) -> tuple[int, int]:
    with _connect(path, read_only=True) as db:
        files = db.execute("SELECT count(*) FROM files").fetchone()[0]
        passages = db.execute("SELECT count(*) FROM passages").fetchone()[0]
    return int(files), int(passages)


@dataclass(frozen=True, slots=True)
class Hit:
    """A passage found, with the key that orders ties the same way every time."""

    id: int
    passage: Passage
    order: tuple[str, int]


class KnowledgeIndex:
    """A built index opened for searching (read only; each thread gets its own connection)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.is_file():
            raise KnowledgeError(
                f"[knowledge] index {printable(str(path))} does not exist: run `kame knowledge index PROFILE`"
            )
        self._local = threading.local()
        self.ids: list[int] = []
        self.vectors: np.ndarray | None = None
        with _connect(path, read_only=True) as db:
            rows = db.execute("SELECT id, vector FROM vectors ORDER BY id").fetchall()
        if rows:
            import numpy as np

            self.ids = [int(r[0]) for r in rows]
            self.vectors = np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows])

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)
            self._local.db = db
        return db

    def search(self, match: str, limit: int) -> list[Hit]:
        """The best `limit` passages for an FTS5 expression (`query.fts_query`), best first; ties in
        document order."""
        if not match:
            return []
        rows = self._db().execute(
            "SELECT rowid, text, heading, document, ordinal FROM passages WHERE passages MATCH ? "
            "ORDER BY bm25(passages, 1.0, 0.5), document, ordinal LIMIT ?",
            (match, limit),
        )
        return [_hit(row) for row in rows]

    def headings(self) -> list[str]:
        """Every distinct heading trail, in document order."""
        rows = self._db().execute(
            "SELECT heading FROM passages WHERE heading != '' "
            "GROUP BY heading ORDER BY min(document), min(ordinal)"
        )
        return [str(row[0]) for row in rows]

    def passages(self, ids: Sequence[int]) -> dict[int, Hit]:
        """The passages with these ids."""
        marks = ",".join("?" * len(ids))
        rows = self._db().execute(
            f"SELECT rowid, text, heading, document, ordinal FROM passages WHERE rowid IN ({marks})",
            tuple(ids),
        )
        return {hit.id: hit for hit in map(_hit, rows)}


def _hit(row: tuple[int, str, str, str, int]) -> Hit:
    rowid, text, heading, document, ordinal = row
    return Hit(int(rowid), Passage(document, heading, text), (document, int(ordinal)))
