"""A wire-level fake of OpenAI's `/v1/embeddings` on loopback (no embedding model runs here).

A text's vector counts its words hashed into a few dimensions, with a small synonym table, so
"reimbursement" lands where "refund" does: what a real model does for meaning, BM25 cannot.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from tests.support.llm_server import FaultyOpenAI, _JsonHandler

DIMENSIONS = 1024
SYNONYMS = {"reimbursement": "refund", "money": "refund", "appliance": "kettle"}


def vector(text: str) -> list[float]:
    """The fake model's embedding of `text`."""
    values = [0.0] * DIMENSIONS
    for word in re.findall(r"\w+", text.lower()):
        word = SYNONYMS.get(word, word)
        values[int(hashlib.sha256(word.encode()).hexdigest(), 16) % DIMENSIONS] += 1.0
    return values


class _Handler(_JsonHandler):
    def do_POST(self) -> None:
        owner: FakeEmbeddings = self.owner
        body = self.read_json() or {}
        owner.record("POST", self.path, body)
        if owner.delay_s:
            owner.stopping.wait(owner.delay_s)
        inputs = body.get("input") or []
        inputs = [inputs] if isinstance(inputs, str) else inputs
        data: list[dict[str, Any]] = [
            {"object": "embedding", "index": i, "embedding": vector(text)} for i, text in enumerate(inputs)
        ]
        self.send_json(
            200,
            {
                "object": "list",
                "data": data,
                "model": body.get("model", "fake"),
                "usage": {"prompt_tokens": 1, "total_tokens": 1},
            },
        )


class FakeEmbeddings(FaultyOpenAI):
    """`POST /v1/embeddings`; `delay_s` makes every answer that late (a slow embedding server)."""

    handler = _Handler
    delay_s = 0.0

    def calls(self) -> int:
        return sum(1 for path in self.paths() if path.endswith("/embeddings"))
