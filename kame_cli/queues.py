"""What several threads' owners do with a queue of work handed over by other threads."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")


def drain(q: queue.SimpleQueue[T] | queue.Queue[T]) -> Iterator[T]:
    """The items queued now, oldest first, without waiting for more."""
    while True:
        try:
            yield q.get_nowait()
        except queue.Empty:
            return
