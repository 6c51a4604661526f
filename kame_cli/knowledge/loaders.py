"""Documents read into sections: (heading trail or page, text), from Markdown, text, PDF and HTML.

Each reader keeps where a piece of text came from, so a passage can name its source
(`handbook.md > Returns`, `sheet.pdf > page 2`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from kame_cli.knowledge.errors import KnowledgeError

SUFFIXES = (".md", ".markdown", ".txt", ".text", ".pdf", ".html", ".htm")
"""The file types `[knowledge] documents` may name."""


@dataclass(frozen=True, slots=True)
class Section:
    """A run of a document's text under one heading trail (or on one PDF page)."""

    heading: str
    """`Title > Subtitle`, `page 3`, or empty (text before any heading, a plain text file)."""
    text: str


def read_document(path: Path) -> list[Section]:
    """The sections of one document; KnowledgeError (one line, exit 2) if it cannot be read."""
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise KnowledgeError(f"{path}: not a supported document type (use {', '.join(SUFFIXES)})")
    try:
        return reader(path)
    except OSError as err:
        raise KnowledgeError(
            f"{path}: cannot be read ({err.strerror or type(err).__name__}): fix its permissions or "
            "remove it from [knowledge] documents"
        ) from None


def _text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise KnowledgeError(
            f"{path}: not UTF-8 text (byte {err.start}): save it as UTF-8 or remove it from "
            "[knowledge] documents"
        ) from None


_ATX = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


def _markdown(path: Path) -> list[Section]:
    sections: list[Section] = []
    trail: list[tuple[int, str]] = []
    body: list[str] = []
    in_fence = False

    def close() -> None:
        text = "\n".join(body).strip()
        if text:
            sections.append(Section(" > ".join(title for _, title in trail), text))
        body.clear()

    for line in _text(path).splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
        heading = None if in_fence else _ATX.match(line)
        if heading is None:
            body.append(line)
            continue
        close()
        level = len(heading.group(1))
        trail = [(lvl, title) for lvl, title in trail if lvl < level]
        trail.append((level, heading.group(2).strip()))
    close()
    return sections


def _plain(path: Path) -> list[Section]:
    text = _text(path).strip()
    return [Section("", text)] if text else []


def _pdf(path: Path) -> list[Section]:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        with path.open("rb") as file:
            reader = PdfReader(file)
            pages = [(page.extract_text() or "") for page in reader.pages]
    except (PyPdfError, ValueError, KeyError, TypeError) as err:
        reason = " ".join(str(err).split())[:120] or type(err).__name__
        raise KnowledgeError(
            f"{path}: not a readable PDF ({reason}): repair it or remove it from [knowledge] documents"
        ) from None
    return [Section(f"page {number}", text.strip()) for number, text in enumerate(pages, 1) if text.strip()]


class _HtmlText(HTMLParser):
    """Visible text of a page, cut into sections at its h1-h6 headings."""

    _SKIP = frozenset({"script", "style", "noscript", "template", "head"})
    _BLOCKS = frozenset({"p", "div", "li", "tr", "br", "section", "article", "dd", "dt", "pre", "blockquote"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: list[Section] = []
        self._trail: list[tuple[int, str]] = []
        self._body: list[str] = []
        self._heading: tuple[int, list[str]] | None = None
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self._close()
            self._heading = (int(tag[1]), [])
        elif tag in self._BLOCKS:
            self._body.append("\n\n" if tag == "p" else "\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skipping = max(0, self._skipping - 1)
        elif re.fullmatch(r"h[1-6]", tag) and self._heading is not None:
            level, words = self._heading
            self._heading = None
            self._trail = [(lvl, title) for lvl, title in self._trail if lvl < level]
            self._trail.append((level, " ".join("".join(words).split())))
        elif tag in self._BLOCKS:
            self._body.append("\n")

    def handle_data(self, data: str) -> None:
        if self._skipping:
            return
        if self._heading is not None:
            self._heading[1].append(data)
        else:
            self._body.append(data)

    def _close(self) -> None:
        lines = [" ".join(line.split()) for line in "".join(self._body).split("\n")]
        text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
        if text:
            self.sections.append(Section(" > ".join(title for _, title in self._trail), text))
        self._body = []

    def close(self) -> None:
        super().close()
        self._close()


def _html(path: Path) -> list[Section]:
    parser = _HtmlText()
    parser.feed(_text(path))
    parser.close()
    return parser.sections


_READERS: dict[str, Callable[[Path], list[Section]]] = {
    ".md": _markdown,
    ".markdown": _markdown,
    ".txt": _plain,
    ".text": _plain,
    ".pdf": _pdf,
    ".html": _html,
    ".htm": _html,
}
