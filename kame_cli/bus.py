"""Fan-out of events from every thread to every consumer, never blocking the producer."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Protocol

from kame_cli.events import Event


class EventSink(Protocol):
    """Anything events can be published to; `publish` must never block."""

    def publish(self, event: Event) -> None: ...


class Subscription:
    """One consumer's queue. A bounded one drops (and counts) what it cannot take."""

    def __init__(self, name: str, maxsize: int, accept: Callable[[Event], bool] | None) -> None:
        self.name = name
        self.queue: queue.Queue[Event] = queue.Queue(maxsize=maxsize)
        self.dropped = 0
        self._accept = accept

    def offer(self, event: Event) -> None:
        if self._accept is not None and not self._accept(event):
            return
        try:
            self.queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1

    def drain(self) -> list[Event]:
        """Everything queued now, without waiting."""
        items: list[Event] = []
        while True:
            try:
                items.append(self.queue.get_nowait())
            except queue.Empty:
                return items


class Forward:
    """Hands each accepted event straight to `target` on the publisher's thread: for a target that
    only enqueues (such as the oracle producer's inbox), a consumer thread would add nothing."""

    def __init__(self, name: str, target: Callable[[Event], None], accept: Callable[[Event], bool]) -> None:
        self.name = name
        self._target = target
        self._accept = accept

    def offer(self, event: Event) -> None:
        if self._accept(event):
            self._target(event)


class EventBus:
    """Publishes each event to every subscription; lossless ones (maxsize 0) never drop."""

    def __init__(self) -> None:
        self._subscriptions: tuple[Subscription | Forward, ...] = ()
        self._lock = threading.Lock()

    def subscribe(
        self, name: str, maxsize: int = 4096, accept: Callable[[Event], bool] | None = None
    ) -> Subscription:
        sub = Subscription(name, maxsize, accept)
        with self._lock:
            self._subscriptions = (*self._subscriptions, sub)
        return sub

    def forward(self, name: str, target: Callable[[Event], None], accept: Callable[[Event], bool]) -> Forward:
        """Call `target` (which must never block) with every accepted event."""
        forward = Forward(name, target, accept)
        with self._lock:
            self._subscriptions = (*self._subscriptions, forward)
        return forward

    def unsubscribe(self, sub: Subscription | Forward) -> None:
        with self._lock:
            self._subscriptions = tuple(s for s in self._subscriptions if s is not sub)

    def publish(self, event: Event) -> None:
        # Reading the tuple needs no lock: subscribe/unsubscribe replace it whole.
        for sub in self._subscriptions:
            sub.offer(event)
