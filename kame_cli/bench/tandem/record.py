"""A session log read back: the typed events of `events.jsonl` and the audio beside them.

The log is the only interface to a session that the tandem measures rely on, so they measure what
any recorded session holds, live or replayed, and nothing the session does not publish.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kame_cli.clock import FRAME_SECONDS
from kame_cli.errors import ConfigError
from kame_cli.events import BackendStatus, Event, StepTiming

if TYPE_CHECKING:
    import numpy as np

EVENT_TYPES: dict[str, type] = {cls.__name__: cls for cls in typing.get_args(Event)}


def parse_record(record: dict[str, Any]) -> Event | None:
    """The event one JSON line describes; None for a type this version does not know (a newer log)."""
    cls = EVENT_TYPES.get(str(record.get("type")))
    if cls is None:
        return None
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in record:
            if f.default is not dataclasses.MISSING:
                continue  # a field added since that log was written: its default
            return None  # an older or different layout: better left out than half-read
        value = record[f.name]
        values[f.name] = tuple(value) if isinstance(value, list) else value
    return typing.cast(Event, cls(**values))


def parse_lines(lines: typing.Iterable[str]) -> list[Event]:
    events = []
    for line in lines:
        if not line.strip():
            continue
        event = parse_record(json.loads(line))
        if event is not None:
            events.append(event)
    return events


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
        return self.directory / "input.wav"

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
        """The user's audio (mono float32) and its sample rate."""
        import soundfile as sf

        audio, rate = sf.read(str(self.input_wav), dtype="float32", always_2d=True)
        return audio.mean(axis=1), int(rate)

    def output_audio(self) -> tuple[np.ndarray, int] | None:
        import soundfile as sf

        path = self.directory / "output.wav"
        if not path.is_file():
            return None
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
        return audio.mean(axis=1), int(rate)


def read_session(directory: Path, *, paced: bool | None = None) -> SessionRecord:
    """Read a `--log-dir` folder; ConfigError (one line, exit 2) if it is not a complete session log."""
    path = directory / "events.jsonl"
    if not path.is_file():
        raise ConfigError(
            f"{directory}: no events.jsonl in it: give a folder written by `kame talk --log-dir DIR`"
        )
    if not (directory / "input.wav").is_file():
        raise ConfigError(f"{directory}: no input.wav in it: the session log is incomplete")
    try:
        events = parse_lines(path.read_text(encoding="utf-8").splitlines())
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError, ValueError) as err:
        raise ConfigError(f"{path}: not a kame session log ({type(err).__name__}: {err})") from None
    steps = [e for e in events if isinstance(e, StepTiming)]
    steps.sort(key=lambda s: s.step)
    if paced is None:
        paced = _looks_paced(steps)
    return SessionRecord(directory, events, paced, _origin(events, steps), steps)


def _origin(events: list[Event], steps: list[StepTiming]) -> float:
    # A step cannot end before its frame arrived (frame k is due at origin + (k + 1) frames), so
    # the steps bound the origin from above; the session's "started" status marks it directly.
    bound = min((s.t - (s.step + 1) * FRAME_SECONDS for s in steps), default=None)
    for event in events:
        started = (
            isinstance(event, BackendStatus) and event.component == "session" and event.message == "started"
        )
        if started and (bound is None or event.t <= bound + 0.005):
            return event.t
    return bound if bound is not None else 0.0


def _looks_paced(steps: list[StepTiming]) -> bool:
    if len(steps) < 20:
        return True
    span = steps[-1].t - steps[0].t
    return span >= 0.8 * (steps[-1].step - steps[0].step) * FRAME_SECONDS
