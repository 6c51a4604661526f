"""One question through one session setup: `kame talk` on the spoken turns, as a child process.

The child is exactly a user's `kame talk --input FILE --log-dir DIR --no-ui` (with `--no-llm` for
the front-end alone), so the evaluation shares no interpreter with the session it measures and
reads only what the session's log publishes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kame_cli.errors import ConfigError
from kame_cli.eval.setups import Setup

if TYPE_CHECKING:
    import numpy as np

_START_S = 180.0
"""Time allowed for a session to load (model, STT, LLM server) on a busy CPU, on top of the audio."""


@dataclass(frozen=True)
class SessionOptions:
    """How each session runs (the same for every question and setup)."""

    model: str | None
    gap_s: float
    fast: bool
    seed: int


class SessionFailed(Exception):
    """A session ended with a runtime failure (its last stderr line): reported, retried next run."""


def write_input(
    turns: Sequence[np.ndarray], texts: Sequence[str], gap_s: float, path: Path
) -> list[tuple[float, float, str]]:
    """The session's input WAV: each spoken turn followed by `gap_s` of silence for the reply;
    returns each turn's span (start, end of its gap, text) in seconds of that audio."""
    from kame_cli.tandem.questions import Question as SpokenTurn
    from kame_cli.tandem.questions import session_input

    spoken = [
        SpokenTurn(f"t{i + 1}", text, audio) for i, (text, audio) in enumerate(zip(texts, turns, strict=True))
    ]
    return session_input(spoken, gap_s, path)


def run_session(
    setup: Setup, input_wav: Path, log_dir: Path, duration_s: float, opts: SessionOptions
) -> None:
    """Run the session to its end; ConfigError (exit 2) if it refused its input, SessionFailed if it broke."""
    args = ["talk", "--profile", setup.profile, "--input", str(input_wav), "--log-dir", str(log_dir)]
    args += ["--no-ui", "--seed", str(opts.seed)]
    if setup.kind == "frontend":
        args.append("--no-llm")
    if opts.model is not None:
        args += ["--model", opts.model]
    if opts.fast:
        args.append("--fast")
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as err:
        with open(os.devnull, "w") as devnull:
            child = subprocess.Popen(
                [sys.executable, "-m", "kame_cli.cli", *args], stdout=devnull, stderr=err
            )
        try:
            code = child.wait(timeout=_START_S + 3 * duration_s)
        except subprocess.TimeoutExpired:
            _stop(child)
            raise SessionFailed(f"no end after {_START_S + 3 * duration_s:.0f} s: stopped it") from None
        except BaseException:  # Ctrl-C: the child got the same SIGINT; let it close its files
            _stop(child)
            raise
        err.seek(0)
        lines = [line for line in err.read().splitlines() if line.strip()]
    if code == 0:
        return
    message = (lines[-1] if lines else f"exit code {code}").removeprefix("kame: error: ")
    if code == 2:
        raise ConfigError(message)
    raise SessionFailed(message)


def _stop(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is None:
        child.terminate()  # a session ends cleanly on SIGTERM
        try:
            child.wait(10.0)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
