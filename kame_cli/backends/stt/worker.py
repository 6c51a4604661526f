"""The STT worker thread: takes the front-end's 24 kHz frames without blocking, publishes transcripts."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from kame_cli.audio_io.resampling import StreamResampler, resampled
from kame_cli.backends.stt.audio import WHISPER_RATE
from kame_cli.backends.stt.config import SttConfig
from kame_cli.backends.stt.model import SttModel, load_stt_model
from kame_cli.backends.stt.recognizer import RecognizerStats, StreamingRecognizer
from kame_cli.bus import EventSink
from kame_cli.clock import FRAME_SAMPLES, SAMPLE_RATE, SessionClock
from kame_cli.events import BackendStatus, Event
from kame_cli.priority import deprioritize_current_thread

_DRAIN_MAX_FRAMES = 25
"""Queued frames (2 s) a real-time worker takes in at most before its next decode."""
_POLL_S = 0.05
_REVISION_MARGIN = WHISPER_RATE // 200
"""A revision's first 5 ms (16 kHz samples) are not used: the resampler's filter starts from silence."""


@dataclass(frozen=True, slots=True)
class _Frame:
    seq: int
    pcm: np.ndarray


@dataclass(frozen=True, slots=True)
class _Revision:
    pcm: np.ndarray
    """24 kHz samples that replace the last ones submitted (`submit_revision`)."""


@dataclass(frozen=True, slots=True)
class _EndOfInput:
    number: int
    """Which `end_input()` call this is (1, 2, ...); 0 only wakes the thread for `stop()`."""


class SttWorker:
    """Owns a `StreamingRecognizer` in its own thread; fed by `submit_frame` from the real-time thread.

    Real time, each decode hears all the audio queued so far: when decodes take longer than
    `step_s`, the steps they overran are skipped rather than decoded late (a backlog of audio
    would delay every commit). `realtime=False` (files fed as fast as possible) decodes at every
    step and never drops a frame, so a file gives the same transcripts whatever the pace it is fed
    at. `submit_revision` replaces the last samples submitted, in order with the frames (the echo
    canceller's revision of the user's onset). `end_input()` then
    `wait_flushed(timeout)` waits for the last turn's FinalTranscript.
    """

    def __init__(
        self,
        cfg: SttConfig,
        events: EventSink,
        clock: SessionClock,
        *,
        model: SttModel | None = None,
        realtime: bool = True,
    ) -> None:
        self.cfg = cfg
        self._events = events
        self._clock = clock
        self._model = model
        self._realtime = realtime
        self._max_queued = cfg.queue_frames if realtime else 0
        self._queue: queue.Queue[_Frame | _Revision | _EndOfInput] = queue.Queue()
        self._stop = threading.Event()
        self._flush = threading.Condition()
        self._ends_sent = 0
        self._ends_done = 0
        self._running = False
        self._thread: threading.Thread | None = None
        self._submitted = 0
        self._expected = 0
        """Sequence number of the next frame (worker thread)."""
        self._resampled_in = 0
        """24 kHz samples given to the resampler since it last started a stream (worker thread)..."""
        self._stream_origin = 0
        """...and the recognizer's position (16 kHz) where that stream began: where a revision lands."""
        self.dropped_frames = 0
        """Frames `submit_frame` could not queue (the worker fell `queue_frames` behind)."""
        self.skipped_decodes = 0
        """Steps with no decode of their own: the worker was still busy with an earlier one."""
        self.busy_s = 0.0
        """Seconds the worker spent on audio (resampling, VAD, decoding): busy_s / audio_s is the RTF."""
        self.stats = RecognizerStats()

    # --- lifecycle (owner thread) -----------------------------------------------------------------

    def start(self) -> None:
        """Load the model unless one was given (raises a KameError if it cannot), start the thread."""
        if self._thread is not None:
            raise RuntimeError("SttWorker.start() called twice")
        if self._model is None:
            self._model = load_stt_model(self.cfg)
        # Built here so that a broken install fails the session's start, not the worker thread.
        recognizer = StreamingRecognizer(self._model, self.cfg, now=self._clock.now)
        self.stats = recognizer.stats
        resampler = StreamResampler(SAMPLE_RATE, WHISPER_RATE)
        self._running = True
        self._thread = threading.Thread(
            target=self._run, args=(recognizer, resampler), name="stt-worker", daemon=False
        )
        self._thread.start()

    def end_input(self) -> None:
        """No more audio for now: the worker closes the open turn and publishes its final."""
        with self._flush:
            self._ends_sent += 1
            self._queue.put(_EndOfInput(self._ends_sent))

    def wait_flushed(self, timeout: float | None = None) -> bool:
        """True once all audio before the last `end_input()` is transcribed and its final published.

        False on timeout, or at once when the worker is not running (never started, or stopped).
        """
        with self._flush:
            target = self._ends_sent
            self._flush.wait_for(lambda: self._ends_done >= target or not self._running, timeout)
            return self._ends_done >= target

    def stop(self, timeout: float = 1.0) -> bool:
        """Stop the thread (queued audio is discarded); True if it ended within `timeout`."""
        self._stop.set()
        self._queue.put(_EndOfInput(0))
        return self.join(timeout)

    def join(self, timeout: float | None = None) -> bool:
        """True once the thread has ended (or never started)."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def backlog_s(self) -> float:
        """Seconds of audio queued that the worker thread has not taken in yet: how far behind it is."""
        return self._queue.qsize() * FRAME_SAMPLES / SAMPLE_RATE

    # --- real-time thread -------------------------------------------------------------------------

    def submit_frame(self, pcm24k: np.ndarray) -> None:
        """Queue one 24 kHz float32 frame; never blocks. When the worker is too far behind, drops it."""
        seq = self._submitted
        self._submitted += 1
        if self._max_queued and self._queue.qsize() >= self._max_queued:
            self.dropped_frames += 1
            return
        # A copy: sound-card callbacks hand over a buffer they reuse once they return.
        self._queue.put_nowait(_Frame(seq, np.array(pcm24k, dtype=np.float32)))

    def submit_revision(self, pcm24k: np.ndarray) -> None:
        """The last `pcm24k.size` samples submitted, up to the last frame's end, as they should have
        been (24 kHz float32): the recognizer hears them in place of those it still holds (the user's
        onset, revealed once the echo canceller is sure of them). Never blocks; dropped with the
        frames when the worker is too far behind."""
        if self._max_queued and self._queue.qsize() >= self._max_queued:
            return
        self._queue.put_nowait(_Revision(np.array(pcm24k, dtype=np.float32)))

    # --- worker thread ----------------------------------------------------------------------------

    def _status(self, state: Literal["ok", "degraded", "error"], message: str) -> None:
        self._events.publish(
            BackendStatus(t=self._clock.now(), component="stt", state=state, message=message)
        )

    def _run(self, recognizer: StreamingRecognizer, resampler: StreamResampler) -> None:
        try:
            self._serve(recognizer, resampler)
        finally:
            # Wakes wait_flushed() callers: nothing more will be published.
            with self._flush:
                self._running = False
                self._flush.notify_all()

    def _serve(self, recognizer: StreamingRecognizer, resampler: StreamResampler) -> None:
        assert self._model is not None
        step = max(1, round(self.cfg.step_s * WHISPER_RATE))
        next_step = step
        failed = False
        deprioritize_current_thread()
        self._status("ok", f"listening: {self._model.describe()}")
        held: _Frame | _Revision | _EndOfInput | None = None
        while not self._stop.is_set():
            if held is not None:
                item, held = held, None
            else:
                try:
                    item = self._queue.get(timeout=_POLL_S)
                except queue.Empty:
                    continue
            if self._stop.is_set():
                break
            started = time.perf_counter()
            try:
                if isinstance(item, _EndOfInput):
                    recognizer.insert_audio(resampler.flush())
                    resampler.reset()
                    self._resampled_in, self._stream_origin = 0, recognizer.position
                    self._publish(recognizer.finish())
                    next_step = round(recognizer.audio_time * WHISPER_RATE) + step
                    self._flushed(item.number)
                elif isinstance(item, _Revision):
                    self._revise(recognizer, item.pcm)
                else:
                    self._insert(recognizer, resampler, item)
                    if self._realtime:
                        # Frames that queued up during the last decode: the next one hears them.
                        for _ in range(_DRAIN_MAX_FRAMES):
                            try:
                                queued = self._queue.get_nowait()
                            except queue.Empty:
                                break
                            if isinstance(queued, _EndOfInput):
                                held = queued
                                break
                            if isinstance(queued, _Revision):
                                self._revise(recognizer, queued.pcm)
                            else:
                                self._insert(recognizer, resampler, queued)
                    position = round(recognizer.audio_time * WHISPER_RATE)
                    due = recognizer.decode_due
                    if due or position >= next_step:
                        # Steps that passed while the worker was busy had no decode of their own.
                        self.skipped_decodes += max(0, (position - next_step) // step)
                        # A due decode is not a step later: the next steps count from it, so a
                        # turn's first two partials are a step apart whatever the step clock's phase.
                        next_step = position + step if due else (position // step + 1) * step
                        self._publish(recognizer.process_iter())
                if failed:
                    failed = False
                    self._status("ok", "recovered")
            # Whatever fails in the model stack (CTranslate2, onnxruntime, numpy) must not end the
            # thread that the real-time path feeds: report it, start a fresh stream, go on.
            except Exception as err:
                failed = True
                self._status("error", f"transcription failed: {type(err).__name__}: {err}")
                recognizer.init()
                resampler.reset()
                self._resampled_in, self._stream_origin = 0, recognizer.position
                if isinstance(item, _EndOfInput):
                    self._flushed(item.number)  # nothing more will come of that audio
            self.busy_s += time.perf_counter() - started

    def _insert(self, recognizer: StreamingRecognizer, resampler: StreamResampler, frame: _Frame) -> None:
        """Hand one frame to the recognizer (after the silence of any frames dropped before it)."""
        gap_frames, self._expected = frame.seq - self._expected, frame.seq + 1
        if gap_frames > 0:
            # Frames dropped upstream: keep audio times true with the silence they leave.
            gap = np.zeros(gap_frames * FRAME_SAMPLES, dtype=np.float32)
            recognizer.insert_audio(resampler.process(gap))
            self._resampled_in += gap.shape[0]
            self._status("degraded", f"{self.dropped_frames} audio frames dropped: STT fell behind")
        recognizer.insert_audio(resampler.process(frame.pcm))
        self._resampled_in += frame.pcm.shape[0]

    def _revise(self, recognizer: StreamingRecognizer, pcm24k: np.ndarray) -> None:
        """A revision of the audio up to the end of the last frame inserted; a margin before it is
        resampled with it and dropped, so that its start carries no edge of the resampler's filter."""
        audio = resampled(pcm24k, SAMPLE_RATE, WHISPER_RATE)
        margin = min(_REVISION_MARGIN, audio.shape[0])
        end = self._stream_origin + round(self._resampled_in * WHISPER_RATE / SAMPLE_RATE)
        recognizer.revise_audio(end, audio[margin : round(pcm24k.shape[0] * WHISPER_RATE / SAMPLE_RATE)])

    def _flushed(self, number: int) -> None:
        with self._flush:
            self._ends_done = max(self._ends_done, number)
            self._flush.notify_all()

    def _publish(self, events: Iterable[Event]) -> None:
        for event in events:
            self._events.publish(event)
