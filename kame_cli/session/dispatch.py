"""Typed message dispatch: each message goes to the handler registered for its type.

A supervisor's link hands it every message a child sends; instead of a chain of `isinstance`
tests, it builds one `Dispatch` per peer: `Dispatch().on(Ready, self._ready).on(Failure, ...)`.
`on` ties a handler to a type so that mypy checks the handler takes that type. A message of a
type with no handler goes to the nearest registered base class, else to `otherwise` (default: it
is dropped). Lookups are cached per type; registering is done before the first message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

M = TypeVar("M")


def _ignore(message: object) -> None:
    return None


class Dispatch:
    """A `dict[type, handler]` with a fallback; call it with a message to route it."""

    def __init__(self, otherwise: Callable[[Any], None] = _ignore) -> None:
        self._handlers: dict[type, Callable[[Any], None]] = {}
        self._otherwise = otherwise
        self._resolved: dict[type, Callable[[Any], None]] = {}

    def on(self, kind: type[M], handler: Callable[[M], None]) -> Dispatch:
        """Route messages of type `kind` (and its subclasses) to `handler`; returns self."""
        self._handlers[kind] = handler
        self._resolved.clear()
        return self

    def on_each(self, kinds: tuple[type, ...], handler: Callable[[Any], None]) -> Dispatch:
        """The same handler for several types."""
        for kind in kinds:
            self.on(kind, handler)
        return self

    def handler(self, kind: type) -> Callable[[Any], None]:
        """The handler a message of type `kind` goes to."""
        found = self._resolved.get(kind)
        if found is None:
            found = next((self._handlers[k] for k in kind.__mro__ if k in self._handlers), self._otherwise)
            self._resolved[kind] = found
        return found

    def __call__(self, message: object) -> None:
        self.handler(type(message))(message)
