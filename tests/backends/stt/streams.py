"""Feeding frames to a real `SttWorker` as the session does, and picking transcripts out."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from kame_cli.backends.stt.config import SttConfig
from kame_cli.backends.stt.model import SttModel
from kame_cli.backends.stt.recognizer import RecognizerStats
from kame_cli.backends.stt.worker import SttWorker
from kame_cli.bench.stt import EventList
from kame_cli.clock import FRAME_SECONDS, SessionClock
from kame_cli.events import Event, FinalTranscript, PartialTranscript


@dataclass(frozen=True, slots=True)
class StreamRun:
    events: list[Event]
    wall_s: float
    dropped_frames: int
    skipped_decodes: int
    stats: RecognizerStats


def run_stream(
    frames: Iterable[np.ndarray], cfg: SttConfig, *, model: SttModel, paced: bool = False
) -> StreamRun:
    """Feed 24 kHz frames through `submit_frame`, as fast as possible or `paced` like a microphone
    (frame i at (i + 1) x 80 ms), then `end_input()` and wait for the last final."""
    clock = SessionClock()
    sink = EventList()
    worker = SttWorker(cfg, sink, clock, model=model, realtime=paced)
    worker.start()
    try:
        feed_start = clock.now()
        for count, frame in enumerate(frames, start=1):
            if paced:
                delay = feed_start + count * FRAME_SECONDS - clock.now()
                if delay > 0:
                    time.sleep(delay)  # a microphone's pace, not a wait for a condition
            worker.submit_frame(frame)
        worker.end_input()
        assert worker.wait_flushed(300), "STT did not finish"
        wall_s = clock.now() - feed_start
    finally:
        worker.stop()
    return StreamRun(sink.snapshot(), wall_s, worker.dropped_frames, worker.skipped_decodes, worker.stats)


def transcribe_stream(frames: Iterable[np.ndarray], cfg: SttConfig, *, model: SttModel) -> list[Event]:
    return run_stream(frames, cfg, model=model).events


def transcripts(events: Iterable[Event]) -> list[FinalTranscript]:
    return [e for e in events if isinstance(e, FinalTranscript)]


def partials(events: Iterable[Event]) -> list[PartialTranscript]:
    return [e for e in events if isinstance(e, PartialTranscript)]
