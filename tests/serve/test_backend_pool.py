"""`BackendPool`: a loaded back-end waits for every free session slot, so sessions admitted together
start at once (one waiting for a load would sit tens of seconds on a loaded CPU without reading its
WebSocket, and the server's heartbeat closes such a connection). Fake back-ends stand for the
processes: what is tested is which one the pool hands out and when it starts loading the next."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from kame_cli.errors import RuntimeFailure
from kame_cli.serve.processes import BackendPool

SETUP = object()  # the pool only hands it to the factory


class FakeBackend:
    """A back-end process as the pool sees it: loading until `load()`, alive until `stop()`."""

    def __init__(self, setup: object, on_stopped: Callable[[], None]) -> None:
        assert setup is SETUP
        self.ready = threading.Event()
        self.failure: str | None = None
        self.stopped = False
        self._on_stopped = on_stopped

    def load(self) -> FakeBackend:
        self.ready.set()
        return self

    @property
    def alive(self) -> bool:
        return not self.stopped and self.failure is None

    def stop(self) -> None:
        self.stopped = True
        self._on_stopped()


class Factory:
    def __init__(self) -> None:
        self.made: list[FakeBackend] = []

    def __call__(self, setup: object, on_stopped: Callable[[], None]) -> FakeBackend:
        self.made.append(FakeBackend(setup, on_stopped))
        return self.made[-1]

    def loading(self) -> int:
        return sum(not b.ready.is_set() for b in self.made)


def _pool(slots: int) -> tuple[BackendPool, Factory]:
    factory = Factory()
    pool = BackendPool(SETUP, slots=slots, make=factory)  # type: ignore[arg-type]
    pool.fill()
    return pool, factory


def test_two_sessions_admitted_together_both_get_a_loaded_back_end() -> None:
    pool, factory = _pool(slots=2)
    assert len(factory.made) == 2  # one per free slot, loading in parallel
    for backend in factory.made:
        backend.load()
    pool.wait_spare(0)  # "ready" means both slots can start at once

    first, second = pool.take(), pool.take()
    assert first is factory.made[0] and second is factory.made[1]
    assert first.ready.is_set() and second.ready.is_set()
    # Every slot taken: one more loads ahead, for the next session in the line.
    assert len(factory.made) == 3 and factory.loading() == 1


def test_sessions_ending_top_the_spares_up_to_one_per_free_slot() -> None:
    pool, factory = _pool(slots=2)
    for backend in factory.made:
        backend.load()
    first, second = pool.take(), pool.take()
    factory.made[2].load()
    assert first is not None and second is not None
    first.stop()  # one free slot, and one spare waits already
    assert len(factory.made) == 3
    second.stop()  # both free: a second spare starts loading
    assert len(factory.made) == 4 and factory.loading() == 1
    assert [pool.take(), pool.take()] == factory.made[2:4]


def test_ready_waits_for_every_spare_and_a_dead_one_is_not_handed_out() -> None:
    pool, factory = _pool(slots=2)
    factory.made[0].load()
    with pytest.raises(RuntimeFailure, match="did not load within 0 s"):
        pool.wait_spare(0)
    factory.made[1].load().failure = "the back-end process died while loading"
    with pytest.raises(RuntimeFailure, match="died while loading"):
        pool.wait_spare(0)
    assert pool.take() is factory.made[0]
    replacement = pool.take()  # the dead spare is stopped and a new one made in its place
    assert factory.made[1].stopped and replacement is not None and replacement not in factory.made[:2]


def test_one_slot_keeps_one_spare_and_close_stops_it() -> None:
    pool, factory = _pool(slots=1)
    assert len(factory.made) == 1
    taken = pool.take()
    assert taken is factory.made[0] and len(factory.made) == 2
    pool.close()
    assert factory.made[1].stopped
    taken.stop()
    assert len(factory.made) == 2  # a closed pool loads nothing more
