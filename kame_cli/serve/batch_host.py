"""The front-end host's sessions when `kame serve --max-sessions N` (N > 1): rows of one batch.

One `BatchLoop` steps every session together each 80 ms tick (`engine/batch_loop.py`); it also
does the pacer's job: a session's client frames wait in a bounded jitter buffer, and a tick that
finds none steps that session on silence (counted late) without holding the others back. Each
session's events go to the supervisor tagged with its id, as the single-session host sends them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kame_cli.clock import SessionClock
from kame_cli.serve.session_link import SessionLink, route_input
from kame_cli.serve.wire import HostSetup
from kame_cli.session.link import Link

if TYPE_CHECKING:
    from kame_cli.engine.batch_loop import BatchLoop, BatchSession
    from kame_cli.engine.loader import Frontend

_LEAVE_S = 0.5


class BatchedSessions:
    """Up to `setup.max_sessions` sessions on one batched front-end."""

    def __init__(self, frontend: Frontend, setup: HostSetup, link: Link) -> None:
        from kame_cli.engine.batch_loop import BatchLoop
        from kame_cli.engine.loader import Sampling

        self.link = link
        self.seed = setup.frontend.seed
        self.loop: BatchLoop = BatchLoop(
            frontend,
            setup.max_sessions,
            sampling=Sampling.from_config(setup.frontend),
            jitter_frames=setup.jitter_frames,
        )
        self._sessions: dict[int, BatchSession] = {}
        self._failed = False

    def start(self) -> None:
        """Warm the batch up (CUDA graphs at `max_sessions`) and start ticking."""
        self.loop.start()

    def on_message(self, message: Any) -> bool:
        """A client frame or an oracle command for a session (the link's reader thread); False for
        a message that is not one."""
        return route_input(message, self._sessions.get)

    def start_session(self, sid: int, clock_origin: float) -> None:
        from kame_cli.engine.batch import SlotsFull

        tagged = SessionLink(self.link, sid)
        try:
            session = self.loop.open_session(
                tagged, SessionClock(clock_origin), tagged.output, seed=self.seed
            )
        except (SlotsFull, RuntimeError) as err:
            tagged.refused(err)
            return
        self._sessions[sid] = session
        tagged.started()

    def end_session(self, sid: int) -> None:
        session = self._sessions.pop(sid, None)
        if session is None:
            return
        session.leave()
        session.ended.wait(_LEAVE_S)
        SessionLink(self.link, sid).ended(session.summary())

    def check(self) -> None:
        """When the batch's thread failed, every session ends with that one line."""
        error = self.loop.error
        if error is None or self._failed:
            return
        self._failed = True
        for sid in list(self._sessions):
            SessionLink(self.link, sid).loop_failed(error)
            self.end_session(sid)

    def close(self) -> None:
        for sid in list(self._sessions):
            self.end_session(sid)
        self.loop.stop(timeout=_LEAVE_S)
