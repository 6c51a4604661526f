"""`kame bench echo --jobs N`: the rooms over N worker processes, their rows back in seed order.

Each room is simulated and transcribed on its own (its seed draws the room and the scene; the STT
starts each recording afresh), so a room's row does not depend on which process ran it or what ran
before it: N processes give the rows one process gives, about N times sooner on N free cores, and
one summary over all of them (the held-out figures pool 50 rooms). Workers are spawned, not forked
(the parent may already hold the STT's and torch's threads), and each loads the model and the
user's clips once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kame_cli.bench.echo import SeedResult


@dataclass(frozen=True, slots=True)
class RoomJob:
    """What every room of one run shares (picklable: it is sent to each worker)."""

    audio_dir: Path | None
    user_voice: str
    assistant_voice: str
    engine: str
    rooms: str
    residual_suppression: bool
    ideal: bool
    duck_db: float


_loaded: tuple[Any, Any] | None = None
"""This worker's STT model and user clips, loaded once by `_start`."""


def load_inputs(job: RoomJob) -> tuple[Any, Any]:
    """The STT model (on the CPU, one thread, as a session decodes) and the user's clips."""
    from kame_cli.backends.stt.config import SttConfig
    from kame_cli.backends.stt.model import load_stt_model
    from kame_cli.bench.echo import _user_clips

    model = load_stt_model(SttConfig(model="auto", device="cpu", cpu_threads=1))
    return model, _user_clips(job.audio_dir, job.user_voice)


def _start(job: RoomJob) -> None:
    global _loaded
    _loaded = load_inputs(job)


def _room(job: RoomJob, seed: int, loaded: tuple[Any, Any] | None = None) -> SeedResult:
    """One room, with `loaded` (this process's inputs) or, in a worker, what `_start` loaded."""
    from kame_cli.bench.echo import run_seed

    inputs = loaded if loaded is not None else _loaded
    assert inputs is not None, "a worker runs a room only after _start"
    model, users = inputs
    return run_seed(
        seed,
        model,
        users,
        job.assistant_voice,
        job.engine,
        job.rooms,
        job.residual_suppression,
        job.ideal,
        job.duck_db,
    )


def room_results(job: RoomJob, seeds: range, jobs: int, loaded: tuple[Any, Any]) -> Iterator[SeedResult]:
    """Each seed's row, in seed order, as it is ready: in this process (`loaded`: its model and clips)
    with `jobs` 1, else over `jobs` workers."""
    if jobs <= 1 or len(seeds) <= 1:
        for seed in seeds:
            yield _room(job, seed, loaded)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from functools import partial

    context = multiprocessing.get_context("spawn")
    workers = min(jobs, len(seeds))
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_start, initargs=(job,)) as pool:
        # `map` hands the rows back in the seeds' order whichever worker finishes first.
        yield from pool.map(partial(_room, job), seeds)
