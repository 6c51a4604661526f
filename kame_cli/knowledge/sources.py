"""`[knowledge] documents` patterns resolved into the files they name, checked before anything is
read or written: a pattern that matches nothing, a folder given as a file, an unsupported type or
an unreadable file is one line, exit 2."""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kame_cli.errors import printable
from kame_cli.knowledge.errors import KnowledgeError
from kame_cli.knowledge.loaders import SUFFIXES

_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True, slots=True)
class Document:
    """A file to index, and the name its passages' sources show."""

    path: Path
    name: str


def resolve_documents(patterns: Sequence[str]) -> list[Document]:
    """The files `patterns` (absolute, as the profile loader made them) name, sorted, each once."""
    found: list[Path] = []
    for pattern in patterns:
        found.extend(_matches(pattern))
    paths = sorted(set(found))
    for path in paths:
        _check_readable(path)
    root = _common_folder(paths)
    return [Document(path, path.relative_to(root).as_posix()) for path in paths]


def _matches(pattern: str) -> list[Path]:
    shown = printable(pattern)
    if not any(c in _GLOB_CHARS for c in pattern):
        path = Path(pattern)
        if path.is_dir():
            raise KnowledgeError(
                f"[knowledge] documents: {shown} is a folder: name files, or a glob such as "
                f"{shown.rstrip('/')}/**/*.md"
            )
        if not path.exists():
            raise KnowledgeError(
                f"[knowledge] documents: {shown} does not exist: fix the path in the profile"
            )
        if path.suffix.lower() not in SUFFIXES:
            raise KnowledgeError(
                f"[knowledge] documents: {shown} is not a supported document type (use {', '.join(SUFFIXES)})"
            )
        return [path.resolve()]
    # A glob keeps the files of supported types it matches: `docs/**` may hold images beside the text.
    matched = [
        Path(p).resolve()
        for p in glob.glob(pattern, recursive=True)
        if os.path.isfile(p) and Path(p).suffix.lower() in SUFFIXES
    ]
    if not matched:
        raise KnowledgeError(
            f"[knowledge] documents: {shown} matches no document ({', '.join(SUFFIXES)}): fix the pattern"
        )
    return matched


def _check_readable(path: Path) -> None:
    try:
        with path.open("rb") as file:
            file.read(1)
    except OSError as err:
        raise KnowledgeError(
            f"[knowledge] documents: {printable(str(path))} cannot be read "
            f"({err.strerror or type(err).__name__}): fix its permissions or remove it from the profile"
        ) from None


def _common_folder(paths: Sequence[Path]) -> Path:
    if not paths:
        return Path("/")
    return Path(os.path.commonpath([p.parent for p in paths]))
