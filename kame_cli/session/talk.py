"""`kame talk` end to end: validate input, load the parts, run the session under the live view."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from kame_cli.errors import DeviceError

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


class StopRequest:
    """Set by SIGINT/SIGTERM (or by the caller); the main thread polls it."""

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


def resolve_compute_device(requested: str, model: str) -> str:
    """`auto` -> cuda when there is a GPU; a big model without one is refused with the way out."""
    import torch

    has_cuda = torch.cuda.is_available()
    if requested == "cuda" and not has_cuda:
        raise DeviceError("--device cuda: no CUDA GPU is visible to torch; use --device cpu to force the CPU")
    if requested == "auto":
        if has_cuda:
            return "cuda"
        if model != "random:tiny":
            raise DeviceError(
                f"no CUDA GPU found for front-end {model!r}; use --device cpu to force the CPU (far slower "
                "than real time for a 7B model) or --model random:tiny for an offline demo"
            )
        return "cpu"
    return requested


def run_talk(
    opts: TalkOptions,
    *,
    stop: StopRequest | None = None,
    out: TextIO | None = None,
    on_started: Callable[[], None] | None = None,
) -> int:
    """Run one session to its end (end of file, Ctrl-C or SIGTERM); returns the exit code.

    Whatever happens, the exit stack closes the session, the sinks and the log, so the output WAV
    and `events.jsonl` are complete and valid on every exit path.
    """
    from kame_cli.session.build import build_session

    stop = stop or StopRequest()
    out = out or sys.stdout
    with contextlib.ExitStack() as stack:
        stack.enter_context(stop.on_signals())
        session, view = build_session(opts, stack, out)
        with view:
            session.start()
            if on_started is not None:
                on_started()
            file_mode = opts.input_file is not None
            while not stop.event.is_set():
                view.refresh()
                if file_mode and session.wait_input_end(_UI_PERIOD_S):
                    session.finish(stop.event)
                    break
                if not file_mode:
                    stop.event.wait(_UI_PERIOD_S)
            session.stop()
    return 0


def make_piece_lookup(tokenizer: Any) -> Callable[[int], str]:
    """Token id -> sentencepiece piece, for the panel's consumed/pending oracle text."""
    size = tokenizer.get_piece_size()
    return lambda token_id: tokenizer.id_to_piece(token_id) if 0 <= token_id < size else ""
