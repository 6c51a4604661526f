"""`kame talk` end to end: build the session, run it under the live view until it ends."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from kame_cli.session.runtime import Session

_UI_PERIOD_S = 0.1  # the panel refreshes ten times a second


@dataclass(frozen=True)
class TalkOptions:
    """What `kame talk` was asked; None keeps the profile's value."""

    profile: str | None = None
    model: str | None = None
    device: str | None = None
    half: bool = False
    input_file: Path | None = None
    fast: bool = False
    output_file: Path | None = None
    output_stereo: bool = False
    input_device: str | None = None
    output_device: str | None = None
    no_speaker: bool = False
    log_dir: Path | None = None
    no_ui: bool = False
    no_llm: bool = False
    seed: int | None = None
    aec: str | None = None
    """[aec] `auto`, `on` or `off`; None keeps the profile's `[audio] aec`."""
    headphones: bool = False
    """[aec] The assistant plays into headphones: no echo to cancel (same as `--aec off`)."""
    echo_reference: Path | None = None
    """[aec] Replay a recorded session: the assistant's output as played while `input_file` was recorded."""


class StopRequest:
    """Set by SIGINT/SIGTERM once the session runs (or by the caller); the UI thread polls it."""

    def __init__(self) -> None:
        self.event = threading.Event()

    @contextlib.contextmanager
    def on_signals(self) -> Iterator[None]:
        def handler(signum: int, frame: FrameType | None) -> None:
            self.event.set()

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
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
    """Run one session to its end (end of file, Ctrl-C or SIGTERM); returns the exit code.

    Ctrl-C while models load raises KeyboardInterrupt (the CLI reports it in one line); once the
    session runs it ends it cleanly. Whatever happens, the exit stack stops the session and closes
    the sinks and the log, so the output WAV and `events.jsonl` are complete and valid.
    """
    from kame_cli.session.build import build_session

    stop = stop or StopRequest()
    out = out or sys.stdout
    with contextlib.ExitStack() as stack:
        session, view = build_session(opts, stack, out)
        with view:
            session.start()  # Ctrl-C during warm-up is still a KeyboardInterrupt: the stack unwinds
            stack.enter_context(stop.on_signals())
            if on_started is not None:
                on_started()
            file_mode = opts.input_file is not None
            while not stop.event.is_set():
                view.refresh()
                _raise_failure(session)
                if file_mode and session.wait_input_end(_UI_PERIOD_S):
                    _raise_failure(session)  # a file that broke off ends the input too
                    session.finish(stop.event)
                    _raise_failure(session)
                    break
                if not file_mode:
                    stop.event.wait(_UI_PERIOD_S)
            session.stop()
    return 0


def _raise_failure(session: Session) -> None:
    failure = session.failure()
    if failure is not None:
        session.stop()
        raise failure
