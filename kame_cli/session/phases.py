"""A session's life as named phases, and the only moves between them.

    LOADING ──▶ STARTING ──▶ RUNNING ──▶ DRAINING
       │            │           │            │
       └────────────┴─────┬─────┴────────────┘
                          ▼  (a part the session cannot run without failed)
                        FAILED
    any phase but DONE ──▶ STOPPING ──▶ DONE

- LOADING: the children load their models, in parallel; a signal here ends the session quietly.
- STARTING: the back-end was told to go and starts its STT and oracle; failures are still load failures.
- RUNNING: the user is heard; a back-end that dies is replaced, the voice goes on.
- DRAINING: the input (a file) ended; the front-end steps what it holds, the STT closes the last turn.
- FAILED: the session ended on its own (a load failure, the front-end died); `stop()` comes next.
- STOPPING, DONE: the children are asked to close their files, then reaped; the summary is out.

Public names (`Phase`, `TRANSITIONS`, `PhaseError`, `check_move`, `ChildState`) are shared by every
supervisor.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping


class Phase(enum.Enum):
    LOADING = "loading"
    STARTING = "starting"
    RUNNING = "running"
    DRAINING = "draining"
    FAILED = "failed"
    STOPPING = "stopping"
    DONE = "done"

    @property
    def live(self) -> bool:
        """The session has neither failed nor been asked to stop."""
        return self in _LIVE

    @property
    def started(self) -> bool:
        """The user is heard (a failure now is the session's end, not a load failure)."""
        return self in (Phase.RUNNING, Phase.DRAINING)

    @property
    def stopping(self) -> bool:
        return self in (Phase.STOPPING, Phase.DONE)


_LIVE = frozenset({Phase.LOADING, Phase.STARTING, Phase.RUNNING, Phase.DRAINING})

TRANSITIONS: Mapping[Phase, frozenset[Phase]] = {
    Phase.LOADING: frozenset({Phase.STARTING, Phase.FAILED, Phase.STOPPING}),
    Phase.STARTING: frozenset({Phase.RUNNING, Phase.FAILED, Phase.STOPPING}),
    Phase.RUNNING: frozenset({Phase.DRAINING, Phase.FAILED, Phase.STOPPING}),
    Phase.DRAINING: frozenset({Phase.FAILED, Phase.STOPPING}),
    Phase.FAILED: frozenset({Phase.STOPPING}),
    Phase.STOPPING: frozenset({Phase.DONE}),
    Phase.DONE: frozenset(),
}
"""For each phase, the phases a supervisor may move to from it."""


class PhaseError(RuntimeError):
    """A move the life cycle does not allow: a bug in the supervisor, never the user's doing."""


def check_move(current: Phase, new: Phase) -> None:
    """Raise PhaseError unless `current` may move to `new`."""
    if new not in TRANSITIONS[current]:
        raise PhaseError(f"a session cannot go from {current.name} to {new.name}")


class ChildState(enum.Enum):
    """Where one child process is, as its supervisor has heard: it loads, it is ready (models loaded,
    warmed up), it runs (the back-end's STT and oracle started), or it is gone."""

    LOADING = "loading"
    READY = "ready"
    RUNNING = "running"
    GONE = "gone"
