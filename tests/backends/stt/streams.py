"""Feeding frames to a real `SttWorker` as the session does, and picking transcripts out."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from kame_cli.backends.stt.config import SttConfig
from kame_cli.backends.stt.model import SttModel
from kame_cli.bench.stt import StreamRun, feed
from kame_cli.clock import SessionClock
from kame_cli.events import Event, FinalTranscript, PartialTranscript


def run_stream(
    frames: Iterable[np.ndarray], cfg: SttConfig, *, model: SttModel, paced: bool = False
) -> StreamRun:
    """Feed 24 kHz frames through `submit_frame`, as fast as possible or `paced` like a microphone
    (frame i at (i + 1) x 80 ms), then `end_input()` and wait for the last final: the bench's feeder."""
    return feed(frames, cfg, model, SessionClock(), paced)


def transcribe_stream(frames: Iterable[np.ndarray], cfg: SttConfig, *, model: SttModel) -> list[Event]:
    return run_stream(frames, cfg, model=model).events


def transcripts(events: Iterable[Event]) -> list[FinalTranscript]:
    return [e for e in events if isinstance(e, FinalTranscript)]


def partials(events: Iterable[Event]) -> list[PartialTranscript]:
    return [e for e in events if isinstance(e, PartialTranscript)]
