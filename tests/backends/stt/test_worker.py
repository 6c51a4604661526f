"""SttWorker as the session drives it: non-blocking submits, bounded stop, failures as status events."""

from __future__ import annotations

import dataclasses
import threading
import time

import numpy as np

from kame_cli.backends.stt.config import SttConfig
from kame_cli.backends.stt.model import SttModel
from kame_cli.backends.stt.text import normalize_words
from kame_cli.backends.stt.worker import SttWorker
from kame_cli.bench.stt import EventList
from kame_cli.clock import FRAME_SAMPLES, FRAME_SECONDS, SessionClock
from kame_cli.events import BackendStatus, Event, PartialTranscript
from tests.backends.stt.streams import transcripts
from tests.support.speech import concat, frames


def test_submit_never_blocks_and_counts_what_it_drops(stt_config, stt_model) -> None:
    cfg = dataclasses.replace(stt_config, queue_frames=3)
    worker = SttWorker(cfg, EventList(), SessionClock(), model=stt_model)  # not started: nothing drains
    frame = np.zeros(FRAME_SAMPLES, dtype=np.float32)
    started = time.perf_counter()
    for _ in range(10):
        worker.submit_frame(frame)
    assert time.perf_counter() - started < 0.05
    assert worker.dropped_frames == 7
    assert worker.join(0.1)


def test_start_reports_ok_and_stop_is_bounded(stt_config, stt_model) -> None:
    events = EventList()
    worker = SttWorker(stt_config, events, SessionClock(), model=stt_model)
    worker.start()
    for frame in frames(np.zeros(24_000, dtype=np.float32)):
        worker.submit_frame(frame)
    started = time.perf_counter()
    assert worker.stop(timeout=2.0)
    assert time.perf_counter() - started < 2.0
    status = [e for e in events.snapshot() if isinstance(e, BackendStatus)]
    assert status[0].component == "stt" and status[0].state == "ok" and "tiny.en" in status[0].message


def _transcribe_fast(cfg: SttConfig, model: SttModel, pcm: list[np.ndarray]) -> list[Event]:
    """`pcm` frames through a worker fed as fast as possible, to the last final: what it published."""
    events = EventList()
    worker = SttWorker(cfg, events, SessionClock(), model=model, realtime=False)
    worker.start()
    try:
        for frame in pcm:
            worker.submit_frame(frame)
        worker.end_input()
        assert worker.wait_flushed(60)
    finally:
        assert worker.stop(timeout=2.0)
    return events.snapshot()


def test_a_bad_frame_is_reported_and_transcription_goes_on(questions, stt_config, stt_model) -> None:
    stereo = np.zeros((FRAME_SAMPLES, 2), dtype=np.float32)  # not what STT takes
    published = _transcribe_fast(
        stt_config, stt_model, [stereo, *frames(concat([0.5, questions[0].audio, 1.0]))]
    )
    states = [e.state for e in published if isinstance(e, BackendStatus)]
    assert states[:2] == ["ok", "error"]
    finals = transcripts(published)
    assert len(finals) == 1 and "spider" in normalize_words(finals[0].text)


def test_fast_mode_loses_nothing_and_wait_flushed_returns_once_the_final_is_out(
    questions, stt_config, stt_model
) -> None:
    cfg = dataclasses.replace(stt_config, queue_frames=3)  # a real-time worker would drop most frames
    events = EventList()
    worker = SttWorker(cfg, events, SessionClock(), model=stt_model, realtime=False)
    worker.start()
    try:
        for turn, question in enumerate(questions[:2], start=1):
            # Submitted all at once, far ahead of the worker; the turn is still open at end_input().
            for frame in frames(concat([0.5, question.audio, 0.2])):
                worker.submit_frame(frame)
            worker.end_input()
            assert worker.wait_flushed(60)
            finals = transcripts(events.snapshot())
            assert len(finals) == turn and question.key_word in normalize_words(finals[-1].text)
        assert worker.dropped_frames == 0 and worker.skipped_decodes == 0
    finally:
        assert worker.stop(timeout=2.0)
    worker.end_input()
    started = time.perf_counter()
    assert not worker.wait_flushed(10), "a stopped worker publishes nothing more"
    assert time.perf_counter() - started < 1.0


def test_a_turns_first_partial_and_its_pause_are_decoded_at_once_not_a_step_later(
    questions, stt_config, stt_model
) -> None:
    """With decodes only every 2 s, a turn's first partial still comes at the frame where the turn
    holds `min_audio_s` of speech, and the whole-turn decode that commits its last words at the
    first frame past the pause point, before the closing silence ends the turn."""
    cfg = dataclasses.replace(stt_config, step_s=2.0)
    pcm = [frame for question in questions[:3] for frame in frames(concat([0.5, question.audio, 1.5]))]
    published = _transcribe_fast(cfg, stt_model, pcm)
    finals = transcripts(published)
    assert len(finals) == 3
    previous = 0.0
    # VAD's 32 ms windows may move a turn's onset or speech end a little after the frame that
    # reached it: each decode comes within two frames of its point, not a 2 s step later.
    slack = 2 * FRAME_SECONDS
    for final in finals:
        turn = [e for e in published if isinstance(e, PartialTranscript) and previous < e.t <= final.t]
        previous = final.t
        assert turn[0].audio_end <= final.audio_start + cfg.min_audio_s + slack, (turn[0], final)
        last = turn[-1]
        assert last.tentative == "", last
        # Marked as made at the pause (the oracle's `restart_on_pause` acts on it); no earlier
        # partial of the turn is, unless the speaker paused mid-question.
        assert last.pause, turn
        assert not turn[0].pause, turn
        assert normalize_words(last.committed)[-1] == normalize_words(final.text)[-1], (last, final)
        # The pause point: the turn's last speech + the pad.
        assert last.audio_end <= final.audio_end + cfg.speech_pad_ms / 1000 + slack, (last, final)


def test_a_real_time_worker_that_fell_behind_decodes_all_the_audio_queued_since(
    questions, stt_config, stt_model, monkeypatch
) -> None:
    """Audio that queued up during a slow decode is all heard by the next one: a backlog decoded a
    step at a time would delay every commit after it (the steps overrun are counted as skipped)."""
    from kame_cli.backends.stt.recognizer import StreamingRecognizer

    decode = StreamingRecognizer.process_iter
    entered, release = threading.Event(), threading.Event()
    heard: list[float] = []

    def held_decode(self: StreamingRecognizer) -> list:
        heard.append(self.audio_time)
        if len(heard) == 1:
            entered.set()
            release.wait(timeout=10)  # a decode that takes as long as the test wants
        return decode(self)

    monkeypatch.setattr(StreamingRecognizer, "process_iter", held_decode)
    pcm = list(frames(concat([0.3, questions[0].audio, 1.5])))
    events = EventList()
    worker = SttWorker(stt_config, events, SessionClock(), model=stt_model, realtime=True)
    worker.start()
    try:
        sent = 0
        while not entered.is_set():
            assert sent < len(pcm), "no decode before the audio ran out"
            worker.submit_frame(pcm[sent])
            sent += 1
            entered.wait(timeout=FRAME_SECONDS)  # the microphone's pace, and the decode's start
        at_first = heard[0]
        backlog = 12  # about 1 s: four steps of 0.25 s
        for frame in pcm[sent : sent + backlog]:
            worker.submit_frame(frame)
        release.set()
        worker.end_input()
        assert worker.wait_flushed(60)
    finally:
        assert worker.stop(timeout=2.0)
    # The first decode heard up to its frame; the next one everything submitted during it.
    assert heard[1] - at_first >= (backlog - 1) * FRAME_SECONDS, heard[:3]
    assert worker.skipped_decodes >= 2
    assert worker.dropped_frames == 0
