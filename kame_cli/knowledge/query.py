"""The words of a partial transcript turned into a safe SQLite FTS5 query.

The user's words are data, never syntax: each word is quoted, so a transcript holding `"`, `AND`,
`NEAR(`, `*` or `-` cannot break or steer the query. Stop words go (they match every passage and
only add noise); the rest are joined with OR, ranked by BM25.
"""

from __future__ import annotations

import re

MAX_TERMS = 32
"""A long turn's last words: the end of what the user says is what the reply answers."""

_STOP_TEXT = """a about above after again against all am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from further
had has have having he her here hers herself him himself his how i if in into is it its itself
just let me more most my myself no nor not now of off on once only or other our ours ourselves
out over own please same she should so some such tell than that the their theirs them
themselves then there these they this those through to too under until up very was we were
what when where which while who whom why will with would you your yours yourself yourselves
um uh hmm like okay ok yeah well know want need get got say said thanks thank hi hello hey"""
STOP_WORDS = frozenset(_STOP_TEXT.split())
"""Words that match nearly every passage, and a speaker's fillers."""

_WORD = re.compile(r"\w+", re.UNICODE)


def query_terms(text: str) -> list[str]:
    """The content words of `text`, lower case, each once, in order (at most the last MAX_TERMS)."""
    seen: dict[str, None] = {}
    for word in _WORD.findall(text.lower()):
        word = word.strip("_")
        if len(word) < 2 or word in STOP_WORDS:
            continue
        seen.setdefault(word, None)
    return list(seen)[-MAX_TERMS:]


def fts_query(text: str) -> str:
    """An FTS5 MATCH expression for `text`: its content words, each a quoted string, joined by OR;
    empty when no content word is left."""
    return " OR ".join('"' + term.replace('"', '""') + '"' for term in query_terms(text))
