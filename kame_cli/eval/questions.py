"""Evaluation questions: a JSONL file, one question per line, read into frozen `Question`s.

Each line is `{"id": str, "category": str, "turns": [str, ...], "reference": str | [str, ...]}`
(`reference` optional: an answer the judge may compare with, one per turn or one for the first).
A bad file is refused whole, with its name, the line and what to fix (exit 2), before any work.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from kame_cli.errors import ConfigError, printable

BUNDLED = "questions.jsonl"
MAX_FILE_BYTES = 4 * 1024 * 1024
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
"""Ids name folders in `--out`: no separators, no leading dot."""
_KEYS = {"id", "category", "turns", "reference"}


@dataclass(frozen=True, slots=True)
class Question:
    """One question: its user turns in order (a second turn follows up the first answer)."""

    id: str
    category: str
    turns: tuple[str, ...]
    references: tuple[str, ...] = ()
    """Reference answers by turn (may be shorter than `turns`, or empty)."""

    def reference(self, turn: int) -> str | None:
        return self.references[turn] if turn < len(self.references) else None


def bundled_questions() -> Path:
    """The question set shipped with kame (STEM, humanities, reasoning; each with a second turn)."""
    return Path(str(resources.files("kame_cli.eval") / BUNDLED))


def load_questions(path: Path) -> list[Question]:
    """Every question of a JSONL file; ConfigError (one line, exit 2) naming the line at fault."""
    shown = printable(str(path))
    if not path.is_file():
        raise ConfigError(f"--questions {shown}: no such file: give a JSONL file, one question per line")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"--questions {shown}: cannot read it ({err.strerror})") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(
            f"--questions {shown}: larger than {MAX_FILE_BYTES // 2**20} MiB: is it the right file?"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"--questions {shown}: not UTF-8 text: save it as UTF-8 JSONL") from None
    questions: list[Question] = []
    seen: set[str] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{shown} line {number}"
        question = _parse_line(line, where)
        if question.id in seen:
            raise ConfigError(f"{where}: id {question.id!r} used twice: give each question its own id")
        seen.add(question.id)
        questions.append(question)
    if not questions:
        raise ConfigError(f"--questions {shown}: no question in it: one JSON object per line")
    return questions


def _parse_line(line: str, where: str) -> Question:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise ConfigError(
            f"{where}: not JSON ({err.msg} at column {err.colno}): one object per line"
        ) from None
    if not isinstance(record, dict):
        raise ConfigError(
            f'{where}: a JSON object is needed, like {{"id": "q1", "category": ..., "turns": [...]}}'
        )
    unknown = sorted(set(record) - _KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {printable(unknown[0])!r}: the keys are id, category, turns, reference"
        )
    qid = record.get("id")
    if not isinstance(qid, str) or not _ID.match(qid):
        raise ConfigError(
            f"{where}: id must be a short name of letters, digits, '.', '_' or '-' (got {_shown(qid)})"
        )
    category = record.get("category")
    if not isinstance(category, str) or not category.strip():
        raise ConfigError(
            f'{where}: category must be a non-empty string, like "stem" (got {_shown(category)})'
        )
    turns = _texts(record.get("turns"), where, "turns")
    if not turns:
        raise ConfigError(f"{where}: turns must be a list of one or more questions as strings")
    reference = record.get("reference")
    references: tuple[str, ...] = ()
    if isinstance(reference, str):
        references = (reference,)
    elif reference is not None:
        references = _texts(reference, where, "reference")
        if len(references) > len(turns):
            raise ConfigError(
                f"{where}: reference has more answers ({len(references)}) than turns ({len(turns)})"
            )
    return Question(qid, category.strip().lower(), turns, references)


def _texts(value: Any, where: str, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f"{where}: {key} must be a list of non-empty strings (got {_shown(value)})")
    return tuple(" ".join(v.split()) for v in value)


def _shown(value: Any) -> str:
    text = json.dumps(value) if value is not None else "nothing"
    return printable(text if len(text) <= 40 else text[:37] + "...")
