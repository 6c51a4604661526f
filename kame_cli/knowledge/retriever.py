"""Retrieval for each oracle request, on the oracle producer's loop: the user's words find passages
(BM25; fused with embeddings when the profile names a model) within `[knowledge] timeout_ms`, and
the request's messages carry them with their sources. Each retrieval is published as a `Retrieval`.

Deterministic: the same words give the same passages in the same order (ties in document order,
query vectors kept per text), so a restart on the same words sends the same prompt and the LLM
server's prompt cache holds.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Literal

from kame_cli.backends.oracle.config import PromptConfig
from kame_cli.backends.oracle.prompt import Turn, build_messages, notes_block
from kame_cli.bus import EventSink
from kame_cli.clock import SessionClock
from kame_cli.events import Retrieval
from kame_cli.knowledge.config import KnowledgeConfig
from kame_cli.knowledge.index import Hit, KnowledgeIndex
from kame_cli.knowledge.passages import Passage
from kame_cli.knowledge.query import fts_query

if TYPE_CHECKING:
    import numpy as np

RRF_K = 60
"""Reciprocal rank fusion's constant (Cormack et al.): a passage's score is the sum of
1 / (RRF_K + rank) over the rankings that hold it."""
_VECTOR_CACHE = 128

Outcome = Literal["ok", "timeout", "failed"]


class Retriever:
    """Passages of an opened index for the user's words; `inform` builds a request's messages."""

    def __init__(
        self, config: KnowledgeConfig, index: KnowledgeIndex, *, events: EventSink, clock: SessionClock
    ) -> None:
        self.config = config
        self.index = index
        self._events = events
        self._clock = clock
        self._hybrid = config.embedding_model is not None and index.vectors is not None
        self._query_vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        # Its own thread: in the loop's default pool a search could wait behind LiteLLM building
        # requests (pure Python, slow at the back-end's low priority).
        self._searcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kame-knowledge")

    async def find(self, text: str) -> tuple[list[Passage], Outcome]:
        """The best `top_k` passages for `text`, and whether the time budget or a part failed."""
        loop = asyncio.get_running_loop()
        budget = self.config.timeout_ms / 1000.0
        deadline = loop.time() + budget
        top_k = self.config.top_k
        pool = max(4 * top_k, 20) if self._hybrid else top_k
        try:
            bm25 = await asyncio.wait_for(
                loop.run_in_executor(self._searcher, self.index.search, fts_query(text), pool), budget
            )
        except TimeoutError:
            return [], "timeout"
        # The index failing (its file deleted or damaged under a session) must not stop the oracle.
        except (sqlite3.Error, OSError):
            return [], "failed"
        if not self._hybrid:
            return [hit.passage for hit in bm25[:top_k]], "ok"
        try:
            vector = await asyncio.wait_for(self._query_vector(text), max(deadline - loop.time(), 0.001))
        except TimeoutError:
            return [hit.passage for hit in bm25[:top_k]], "timeout"
        except Exception:  # the embedding server is down: BM25 alone still answers
            return [hit.passage for hit in bm25[:top_k]], "failed"
        return self._fused(bm25, vector, pool), "ok"

    async def _query_vector(self, text: str) -> np.ndarray:
        cached = self._query_vectors.get(text)
        if cached is not None:
            self._query_vectors.move_to_end(text)
            return cached
        from kame_cli.knowledge.embed import embed_query

        vector = await embed_query(self.config, text)
        self._query_vectors[text] = vector
        while len(self._query_vectors) > _VECTOR_CACHE:
            self._query_vectors.popitem(last=False)
        return vector

    def _fused(self, bm25: Sequence[Hit], vector: np.ndarray, pool: int) -> list[Passage]:
        import numpy as np

        assert self.index.vectors is not None
        scores = self.index.vectors @ vector.astype(np.float32)
        # Stable sort on the negated score: equal scores keep id order, the same every time.
        best = np.argsort(-scores, kind="stable")[:pool]
        nearest = [self.index.ids[i] for i in best]
        hits = {hit.id: hit for hit in bm25}
        hits.update(self.index.passages([i for i in nearest if i not in hits]))
        fused: dict[int, float] = {}
        for ranking in ([hit.id for hit in bm25], nearest):
            for rank, passage_id in enumerate(ranking):
                fused[passage_id] = fused.get(passage_id, 0.0) + 1.0 / (RRF_K + rank + 1)
        order = sorted(fused, key=lambda i: (-fused[i], hits[i].order))
        return [hits[i].passage for i in order[: self.config.top_k]]

    async def inform(
        self, generation: int, prompt: PromptConfig, turns: Sequence[Turn], partial: str, query: str
    ) -> list[dict[str, str]]:
        """The messages of oracle request `generation`, with the passages `query` retrieves."""
        started = time.perf_counter()
        passages, outcome = await self.find(query)
        notes, used = notes_block(passages, self.config.max_prompt_chars)
        messages = build_messages(prompt, turns, partial, notes)
        self._events.publish(
            Retrieval(
                t=self._clock.now(),
                generation=generation,
                query=query,
                sources=tuple(p.source for p in passages[:used]),
                duration_ms=(time.perf_counter() - started) * 1000.0,
                outcome=outcome,
                chars=len(notes),
            )
        )
        return messages
