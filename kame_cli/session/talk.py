"""`kame talk` end to end: build the session, run it under the live view until it ends.

Exit codes (returned, or carried by the KameError raised): 0 when the session ran to its end or the
user stopped it (Ctrl-C, SIGTERM, SIGHUP: one signal path, from the first moment on, model loading
included); 1 when a part it cannot run without failed (the front-end died, the disk filled up);
2 for bad input, found before anything loads.

`TalkOptions` (what was asked) is declared in `session.options`; `build` turns it into a running
`Session` (`session.runtime`), and `run_talk` drives that session's phases to their end.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import TYPE_CHECKING, TextIO

from kame_cli.errors import EXIT_OK
from kame_cli.session.options import TalkOptions

if TYPE_CHECKING:
    from kame_cli.session.runtime import Session
    from kame_cli.ui.live import SessionView

_UI_PERIOD_S = 0.1  # the panel refreshes ten times a second
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class StopRequest:
    """Set by SIGINT, SIGTERM or SIGHUP (or by the caller); the supervisor's main thread polls it."""

    def __init__(self) -> None:
        self.event = threading.Event()

    @contextlib.contextmanager
    def on_signals(self) -> Iterator[None]:
        def handler(signum: int, frame: FrameType | None) -> None:
            self.event.set()

        previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)


def run_talk(
    opts: TalkOptions,
    *,
    stop: StopRequest | None = None,
    out: TextIO | None = None,
    on_started: Callable[[], None] | None = None,
) -> int:
    """Run one session to its end (end of file, or a stop signal); returns the exit code.

    Whatever happens, the exit stack stops the processes and closes the log, so the output WAV and
    `events.jsonl` are complete and valid; a failure is raised as a KameError after that.
    """
    from kame_cli.session.build import build_session

    stop = stop or StopRequest()
    out = out or sys.stdout
    with contextlib.ExitStack() as stack:
        if threading.current_thread() is threading.main_thread():
            stack.enter_context(stop.on_signals())
        built = build_session(opts, stack, out, stop.event)
        if built is None:  # stopped while loading: the stack stops what had started
            if opts.output.file is not None:  # and the file asked for exists, as after any stop
                from kame_cli.audio_io.wav import write_empty_wav

                write_empty_wav(opts.output.file, stereo=opts.output.stereo)
            return EXIT_OK
        session, view = built
        with view:
            session.start(stop.event)
            if on_started is not None:
                on_started()
            with _Painter(view):
                file_mode = opts.input.file is not None
                while not stop.event.is_set():
                    _raise_failure(session)
                    if file_mode and session.wait_input_end(_UI_PERIOD_S):
                        _raise_failure(session)  # a file that broke off ends the input too
                        session.finish(stop.event)
                        _raise_failure(session)
                        break
                    if not file_mode:
                        stop.event.wait(_UI_PERIOD_S)
            session.stop()
    return EXIT_OK


class _Painter:
    """Redraws the view ten times a second on its own thread, at niceness 10: drawing the panel is
    the supervisor's heaviest work, and it must not take a core from the front-end. Its thread is
    the view's only writer while it runs (the caller's thread draws the last frame after it)."""

    def __init__(self, view: SessionView) -> None:
        self._view = view
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kame-view", daemon=True)

    def __enter__(self) -> _Painter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2.0)

    def _run(self) -> None:
        from kame_cli.priority import deprioritize_current_thread

        deprioritize_current_thread()
        while not self._stop.wait(_UI_PERIOD_S):
            self._view.refresh()


def _raise_failure(session: Session) -> None:
    failure = session.failure()
    if failure is not None:
        session.stop()
        raise failure
