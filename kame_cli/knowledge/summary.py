"""The retrievals of a session in one line (`kame replay`, and anything that reads a session log)."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable

from kame_cli.events import Event, Retrieval


def retrieval_line(events: Iterable[Event]) -> str | None:
    """`documents: 4 retrievals (median 3 ms, 1 late); passages from handbook.md > Returns (4), ...`,
    or None when the session retrieved nothing."""
    found = [e for e in events if isinstance(e, Retrieval)]
    if not found:
        return None
    median = statistics.median(e.duration_ms for e in found)
    late = sum(1 for e in found if e.outcome != "ok")
    sources = Counter(source for e in found for source in e.sources)
    common = ", ".join(f"{source} ({count})" for source, count in sources.most_common(3)) or "none"
    problems = f", {late} late or failed" if late else ""
    return f"documents: {len(found)} retrievals (median {median:.0f} ms{problems}); passages from {common}"
