"""The oracle loop's executor closes a request coroutine built for a caller that was cancelled."""

from __future__ import annotations

import asyncio
import gc
import inspect
import threading
import warnings
from collections.abc import Callable, Coroutine
from typing import Any

from kame_cli.backends.oracle.executor import ClosingExecutor


async def _request() -> str:
    return "answer"


async def _call(build: Callable[[], Coroutine[Any, Any, str]]) -> str:
    """As `litellm.acompletion` does: a thread builds the request coroutine, the caller awaits it."""
    return await (await asyncio.get_running_loop().run_in_executor(None, build))


def _unawaited(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if "never awaited" in str(w.message)]


def _assert_closed_without_a_warning(
    main: Callable[[Any], Coroutine[Any, Any, None]],
    executor: ClosingExecutor,
    built: list[Coroutine[Any, Any, str]],
) -> None:
    """Runs `main(executor)`; the one request coroutine built was closed, and nothing warned."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        asyncio.run(main(executor))
        executor.shutdown(wait=True)
        gc.collect()
    assert len(built) == 1 and inspect.getcoroutinestate(built[0]) == inspect.CORO_CLOSED
    assert not _unawaited(caught), _unawaited(caught)


def test_a_request_built_after_its_caller_was_cancelled_is_closed_without_a_warning() -> None:
    # As in `litellm.acompletion`: a thread builds the request coroutine, the caller awaits it.
    started, release = threading.Event(), threading.Event()
    built: list[Coroutine[Any, Any, str]] = []

    def build() -> Coroutine[Any, Any, str]:
        started.set()
        release.wait(timeout=10)
        built.append(_request())
        return built[-1]

    async def main(executor: ClosingExecutor) -> None:
        asyncio.get_running_loop().set_default_executor(executor)
        task = asyncio.create_task(_call(build))
        await asyncio.to_thread(started.wait, 10)
        task.cancel()  # a restart, or the read timeout, while the thread is still building
        await asyncio.gather(task, return_exceptions=True)
        release.set()

    executor = ClosingExecutor(max_workers=2)
    _assert_closed_without_a_warning(main, executor, built)


def test_a_request_finished_just_before_its_caller_was_cancelled_is_closed_too() -> None:
    # The thread has handed the coroutine over, but the loop cancels the caller before it has
    # taken it: asyncio drops the result then as well.
    built: list[Coroutine[Any, Any, str]] = []

    def build() -> Coroutine[Any, Any, str]:
        built.append(_request())
        return built[-1]

    async def main(executor: ClosingExecutor) -> None:
        handoff = executor.submit(build)
        waiter = asyncio.wrap_future(handoff)
        handoff.result(timeout=10)  # blocks the loop: the result has not reached `waiter` yet
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        await asyncio.sleep(0)  # let asyncio's hand-over callback run and drop the result

    executor = ClosingExecutor(max_workers=1)
    _assert_closed_without_a_warning(main, executor, built)


def test_a_request_whose_caller_waits_is_handed_over_and_runs() -> None:
    async def main() -> str:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ClosingExecutor(max_workers=1))
        request = await loop.run_in_executor(None, _request)
        return await request

    assert asyncio.run(main()) == "answer"


def test_an_exception_in_the_thread_reaches_the_caller() -> None:
    def build() -> None:
        raise ValueError("bad request")

    async def main() -> str:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ClosingExecutor(max_workers=1))
        try:
            await loop.run_in_executor(None, build)
        except ValueError as exc:
            return str(exc)
        return "no exception"

    assert asyncio.run(main()) == "bad request"


def test_a_request_handed_over_to_a_caller_cancelled_before_it_resumed_is_closed_too() -> None:
    # The caller's future already holds the coroutine, but the caller is cancelled before it runs
    # again: asyncio throws the cancellation in at its `await` and drops the result, with no
    # cancellation of the future that would tell the executor.
    built: list[Coroutine[Any, Any, str]] = []

    def build() -> Coroutine[Any, Any, str]:
        built.append(_request())
        return built[-1]

    class Recording(ClosingExecutor):
        def __init__(self) -> None:
            super().__init__(max_workers=1)
            self.handoffs: list[Any] = []

        def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            self.handoffs.append(super().submit(fn, *args, **kwargs))
            return self.handoffs[-1]

    async def main(executor: Recording) -> None:
        asyncio.get_running_loop().set_default_executor(executor)
        task = asyncio.create_task(_call(build))
        await asyncio.sleep(0)  # the task submits its call
        executor.handoffs[0].result(timeout=10)  # blocks the loop until the thread has handed over
        await asyncio.sleep(0)  # asyncio's hand-over callback runs: the task's future is done...
        assert not task.done()
        task.cancel()  # ...and the task is cancelled before it resumes
        await asyncio.gather(task, return_exceptions=True)

    executor = Recording()
    _assert_closed_without_a_warning(main, executor, built)
