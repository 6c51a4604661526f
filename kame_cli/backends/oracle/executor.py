"""The oracle loop's worker threads: a coroutine handed back to a caller that has gone is closed.

`litellm.acompletion` runs LiteLLM's synchronous `completion()` in the loop's default executor,
and that returns the coroutine that makes the HTTP request; `acompletion` then awaits it. When the
request is cancelled (a restart, or our read timeout) while the thread is still building it, which
on a busy machine at the producer's low priority can take over 0.5 s, asyncio drops the thread's
result: the coroutine is never started and Python warns "coroutine ... was never awaited" on
stderr, over the live panel. Such a coroutine holds nothing (it never ran), so closing it is all
that is needed, and is what this executor does.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


class _Handoff(Future[Any]):
    """One call's future; remembers whether its asyncio caller cancelled while it was running."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._abandoned = False

    def cancel(self) -> bool:
        # asyncio calls this when the awaiting future is cancelled; a running call cannot stop, so
        # whatever it hands back later goes to nobody.
        if super().cancel():
            return True
        self.abandon()
        return False

    def abandon(self) -> None:
        """Nobody will take the result any more: a coroutine it holds, or gets, is closed unless it
        has already started."""
        with self._lock:
            self._abandoned = True
            if self.done() and not self.cancelled() and self.exception() is None:
                _close_if_coroutine(self.result())

    def deliver(self, result: Any) -> None:
        with self._lock:
            if self._abandoned:
                _close_if_coroutine(result)
            self.set_result(result)


class ClosingExecutor(ThreadPoolExecutor):
    """A thread pool for an event loop's `run_in_executor` (see the module's docstring)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        handoff = _Handoff()
        # The asyncio task that called `run_in_executor` (None from elsewhere). It can also lose the
        # result without its future being cancelled: when it is cancelled after the result reached
        # its future but before it resumed, asyncio throws the cancellation in at the `await` and
        # the result is dropped. Once that task is done, nobody can take the result.
        try:
            caller = asyncio.current_task()
        except RuntimeError:  # no event loop in this thread
            caller = None
        if caller is not None:
            caller.add_done_callback(lambda _task: handoff.abandon())

        def run() -> None:
            if not handoff.set_running_or_notify_cancel():
                return
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                handoff.set_exception(exc)
            else:
                handoff.deliver(result)

        super().submit(run)
        return handoff


def _close_if_coroutine(value: Any) -> None:
    # Only one that never ran: a started one belongs to whoever is running it.
    if asyncio.iscoroutine(value) and inspect.getcoroutinestate(value) == inspect.CORO_CREATED:
        value.close()
