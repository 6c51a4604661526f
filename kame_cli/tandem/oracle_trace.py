"""Each oracle generation as the log tells it: request, chunks, outcome, and which steps fed its tokens.

`OracleFed` names the step and the token but not the generation; it is recovered from the stream's
semantics: every reset feeds the text start token first, then token k of that answer at step
reset + k. The start token is the one fed token id that no chunk ever carried (it is `text_card`,
outside the tokenizer's range).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from kame_cli.events import Event, OracleChunk, OracleFed, OracleFinished, OracleRequestStarted


@dataclass
class Generation:
    """One LLM request of the oracle producer and what became of it."""

    number: int
    started_t: float
    reason: str
    user_text: str
    chunks: list[OracleChunk] = field(default_factory=list)
    finished: OracleFinished | None = None
    start_fed: OracleFed | None = None
    """The step that fed this answer's start token (None: its reset never reached a step)."""
    fed: list[OracleFed] = field(default_factory=list)
    """Answer tokens the front-end consumed, in order."""
    restart: bool = False
    """It superseded a request that was still running (a restart in KAME's policy)."""

    @property
    def first_chunk_t(self) -> float | None:
        return self.chunks[0].t if self.chunks else None

    @property
    def first_fed_t(self) -> float | None:
        """When the first token of the answer (after the start token) had been fed to the front-end."""
        return self.fed[0].t if self.fed else None

    @property
    def outcome(self) -> str:
        return self.finished.outcome if self.finished is not None else "running"

    @property
    def text(self) -> str:
        return " ".join(c.text for c in self.chunks)

    @property
    def end_t(self) -> float | None:
        return self.finished.t if self.finished is not None else None


def trace_generations(events: list[Event]) -> tuple[dict[int, Generation], int | None]:
    """Generations by number, with their fed tokens attributed; and the start token id if found."""
    generations: dict[int, Generation] = {}
    for event in events:
        if isinstance(event, OracleRequestStarted):
            generations[event.generation] = Generation(
                event.generation, event.t, event.reason, event.user_text
            )
        elif isinstance(event, OracleChunk) and event.generation in generations:
            generations[event.generation].chunks.append(event)
        elif isinstance(event, OracleFinished) and event.generation in generations:
            generations[event.generation].finished = event
    ordered = sorted(generations.values(), key=lambda g: g.number)
    for previous, current in itertools.pairwise(ordered):
        end = previous.end_t
        current.restart = previous.outcome == "cancelled" and (end is None or end >= current.started_t)
    start_id = _start_token_id(events)
    _attribute_feeds(events, generations, start_id)
    return generations, start_id


def _start_token_id(events: list[Event]) -> int | None:
    carried = {i for e in events if isinstance(e, OracleChunk) for i in e.token_ids}
    uncarried = {e.token_id for e in events if isinstance(e, OracleFed)} - carried
    return next(iter(uncarried)) if len(uncarried) == 1 else None


def _attribute_feeds(events: list[Event], generations: dict[int, Generation], start_id: int | None) -> None:
    feeds = [e for e in events if isinstance(e, OracleFed)]
    awaiting: list[Generation] = []  # first chunk seen (reset sent), start token not yet fed
    current: Generation | None = None
    feed_index = 0
    for event in events:
        if isinstance(event, OracleChunk) and event.first and event.generation in generations:
            awaiting.append(generations[event.generation])
            continue
        if not isinstance(event, OracleFed):
            continue
        next_feed = feeds[feed_index + 1] if feed_index + 1 < len(feeds) else None
        feed_index += 1
        # Without a known start id, the first token fed after a reset is taken for it.
        is_start = event.token_id == start_id if start_id is not None else bool(awaiting)
        if is_start and awaiting:
            # Two resets drained before one step: only the newest one took effect, unless the next
            # step feeds a start token too (the newer reset arrived just after this step drained).
            also_next = (
                next_feed is not None
                and next_feed.step == event.step + 1
                and (start_id is None or next_feed.token_id == start_id)
                and len(awaiting) > 1
            )
            current = awaiting.pop(0) if also_next else awaiting[-1]
            if not also_next:
                awaiting.clear()
            current.start_fed = event
        elif not is_start and current is not None:
            current.fed.append(event)
