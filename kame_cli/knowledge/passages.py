"""Sections cut into passages of about `[knowledge] passage_chars`, each keeping its source."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from kame_cli.knowledge.loaders import Section

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True, slots=True)
class Passage:
    """A retrievable piece of a document; `source` names where it is (`handbook.md > Returns`)."""

    document: str
    """The document's name as sources show it (its path below the documents' common folder)."""
    heading: str
    text: str

    @property
    def source(self) -> str:
        return f"{self.document} > {self.heading}" if self.heading else self.document


def cut(document: str, sections: Sequence[Section], size: int) -> list[Passage]:
    """Passages of at most about `size` characters: whole paragraphs where they fit, else sentences,
    else words; a passage never spans two sections."""
    return [
        Passage(document, section.heading, text)
        for section in sections
        for text in _pack(_pieces(section.text, size), size)
    ]


def _pieces(text: str, size: int) -> Iterator[str]:
    for paragraph in re.split(r"\n\s*\n", text):
        paragraph = " ".join(paragraph.split())
        if not paragraph:
            continue
        if len(paragraph) <= size:
            yield paragraph
            continue
        for sentence in _SENTENCE_END.split(paragraph):
            if len(sentence) <= size:
                yield sentence
            else:
                yield from _words(sentence, size)


def _words(text: str, size: int) -> Iterator[str]:
    line: list[str] = []
    length = 0
    for word in text.split():
        if line and length + 1 + len(word) > size:
            yield " ".join(line)
            line, length = [], 0
        line.append(word[:size])
        length += len(word[:size]) + (1 if length else 0)
    if line:
        yield " ".join(line)


def _pack(pieces: Iterator[str], size: int) -> Iterator[str]:
    """Consecutive pieces joined while the passage stays within `size`."""
    current = ""
    for piece in pieces:
        if current and len(current) + 1 + len(piece) > size:
            yield current
            current = piece
        else:
            current = f"{current} {piece}" if current else piece
    if current:
        yield current
