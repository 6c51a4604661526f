"""Who gets the front-end: `slots` active sessions (one unless batched), then a bounded queue in
arrival order.

Runs on the server's event loop only (no locks). A client past `max_queue` is refused before its
WebSocket is accepted (HTTP 503 with Retry-After); a queued one whose client leaves is removed.
"""

from __future__ import annotations

import asyncio
import collections


class Ticket:
    """A client's place: `turn` completes when the front-end is theirs."""

    def __init__(self, turn: asyncio.Future[None]) -> None:
        self.turn = turn

    @property
    def ready(self) -> bool:
        return self.turn.done() and not self.turn.cancelled()


class Admission:
    """`slots` slots and a queue of at most `max_queue` tickets."""

    def __init__(self, max_queue: int, slots: int = 1) -> None:
        self.max_queue = max_queue
        self.slots = slots
        self._active: list[Ticket] = []
        self._waiting: collections.deque[Ticket] = collections.deque()

    @property
    def active(self) -> bool:
        return bool(self._active)

    @property
    def active_count(self) -> int:
        return len(self._active)

    @property
    def queued(self) -> int:
        return len(self._waiting)

    def can_start_now(self) -> bool:
        return len(self._active) < self.slots and not self._waiting

    def enter(self) -> Ticket | None:
        """A ticket (its turn now, or queued), or None when the queue is full."""
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        ticket = Ticket(turn)
        if self.can_start_now():
            self._active.append(ticket)
            turn.set_result(None)
            return ticket
        if len(self._waiting) >= self.max_queue:
            return None
        self._waiting.append(ticket)
        return ticket

    def position(self, ticket: Ticket) -> int:
        """1 for the next in line; 0 when active or gone."""
        try:
            return self._waiting.index(ticket) + 1
        except ValueError:
            return 0

    def leave(self, ticket: Ticket) -> None:
        """The ticket's client is done (or gave up waiting): the next in line gets the slot. Leaving
        twice is harmless."""
        if ticket in self._active:
            self._active.remove(ticket)
            while self._waiting:
                nxt = self._waiting.popleft()
                if not nxt.turn.done():
                    self._active.append(nxt)
                    nxt.turn.set_result(None)
                    return
        else:
            if ticket in self._waiting:
                self._waiting.remove(ticket)
            if not ticket.turn.done():
                ticket.turn.cancel()
