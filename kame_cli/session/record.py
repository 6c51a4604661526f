"""A session log folder read back: its typed events (through `read_log`) and the audio beside them.

`kame plot`, `kame replay` and the benches read sessions only through this, so they measure what
any recorded session holds, live or replayed, and a damaged or planted folder is one line, exit 2.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kame_cli.clock import FRAME_SECONDS
from kame_cli.errors import AudioFileError, ConfigError
from kame_cli.events import Event, SessionStarted, StepTiming
from kame_cli.session.files import EVENTS_FILE, INPUT_WAV, OUTPUT_WAV
from kame_cli.session.logfile import read_log

if TYPE_CHECKING:
    import numpy as np


@dataclass
class SessionRecord:
    """One session's log folder: its events in log order, and the user's audio as the session got it."""

    directory: Path
    events: list[Event]
    paced: bool
    """The input was fed at real-time pace (False for `--fast`: audio time then ran ahead of the clock)."""
    origin: float
    """Session time at which the first input frame began to arrive; in paced mode audio time `a` of
    the input reached the session at `origin + a`."""
    steps: list[StepTiming] = field(default_factory=list)

    def of_type(self, cls: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, cls)]

    @property
    def input_wav(self) -> Path:
        return self.directory / INPUT_WAV

    @property
    def end_t(self) -> float:
        return max((e.t for e in self.events), default=0.0)

    def audio_to_clock(self, audio_s: float) -> float:
        """When the input's audio time `audio_s` reached the session, on the session clock.

        Paced: the file source delivers frame k at origin + (k + 1) frames, a live user's timing.
        Fast: the time the front-end stepped the frame that holds `audio_s` (the only trace left).
        """
        if self.paced or not self.steps:
            return self.origin + audio_s
        index = min(max(int(audio_s / FRAME_SECONDS), 0), len(self.steps) - 1)
        return self.steps[index].t

    def input_audio(self) -> tuple[np.ndarray, int]:
        """The user's audio (mono float32) and its sample rate; one-line error if it is not audio."""
        return read_log_audio(self.input_wav)

    def output_audio(self) -> tuple[np.ndarray, int] | None:
        """The assistant's audio, when the session wrote it."""
        path = self.directory / OUTPUT_WAV
        if not path.exists() and not path.is_symlink():
            return None
        return read_log_audio(path)


def read_log_audio(path: Path) -> tuple[np.ndarray, int]:
    """A WAV of a log folder as mono float32 and its rate; ConfigError (one line, exit 2) if it is
    not a regular file of finite audio."""
    import numpy as np
    import soundfile

    from kame_cli.audio_io.files import open_audio_file

    _regular_file(path, "the session log is incomplete or damaged")
    try:
        with open_audio_file(path) as sound:
            audio = sound.read(dtype="float32", always_2d=True)
            rate = int(sound.samplerate)
    except AudioFileError as err:
        raise ConfigError(f"session log {err}") from None
    except (soundfile.LibsndfileError, OSError, RuntimeError) as err:
        reason = " ".join(str(err).split())
        raise ConfigError(f"{path}: cannot be read as audio ({reason}): the session log is damaged") from None
    if not np.isfinite(audio).all():
        raise ConfigError(f"{path}: holds NaN or infinite samples: the session log is damaged")
    return audio.mean(axis=1), rate


def _regular_file(path: Path, why: str) -> None:
    # A FIFO or device planted in a downloaded log would block the reader or never end.
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ConfigError(f"{path.parent}: no {path.name} in it: {why}") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot be read ({err.strerror}): {why}") from None
    if not stat.S_ISREG(mode):
        raise ConfigError(f"{path}: not a regular file: {why}")


def read_session(directory: Path, *, paced: bool | None = None) -> SessionRecord:
    """Read a `--log-dir` folder; ConfigError (one line, exit 2) if it is not a complete session log."""
    if not directory.is_dir():
        raise ConfigError(f"{directory}: not a folder: give a folder written by `kame talk --log-dir DIR`")
    events = read_log(directory / EVENTS_FILE)
    if not events:
        raise ConfigError(f"{directory / EVENTS_FILE}: holds no events: the session log is empty or damaged")
    _regular_file(directory / INPUT_WAV, "the session log is incomplete")
    steps = sorted((e for e in events if isinstance(e, StepTiming)), key=lambda s: s.step)
    if paced is None:
        paced = _looks_paced(steps)
    return SessionRecord(directory, events, paced, _origin(events, steps), steps)


def _origin(events: list[Event], steps: list[StepTiming]) -> float:
    # A step cannot end before its frame arrived (frame k is due at origin + (k + 1) frames), so
    # the steps bound the origin from above; the session's start mark gives it directly.
    bound = min((s.t - (s.step + 1) * FRAME_SECONDS for s in steps), default=None)
    for event in events:
        if isinstance(event, SessionStarted) and (bound is None or event.t <= bound + 0.005):
            return event.t
    return bound if bound is not None else 0.0


def _looks_paced(steps: list[StepTiming]) -> bool:
    if len(steps) < 20:
        return True
    span = steps[-1].t - steps[0].t
    return span >= 0.8 * (steps[-1].step - steps[0].step) * FRAME_SECONDS
