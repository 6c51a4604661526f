"""The streaming recognizer: 16 kHz audio in, partial and final transcripts out.

Lifecycle as in whisper_streaming: `init()`, then any number of `insert_audio()` / `process_iter()`,
then `finish()`. One thread owns it. Silero VAD (run on every 32 ms window as audio arrives) opens a
turn at speech and closes it after `end_silence_ms` of silence; only turns are decoded, so silence
and noise cost nothing and produce no text. While a turn is open, each `process_iter()` re-decodes
its window and commits words by LocalAgreement-2 (what two consecutive hypotheses agree on); the
committed words are forced as the decoder's prefix, so each decode only writes the rest. Past
`trim_window_s`, the window is cut at a pause after its committed words to keep decodes cheap.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from kame_cli.backends.stt.audio import VAD_WINDOW, WHISPER_RATE, StreamingVad
from kame_cli.backends.stt.config import SttConfig
from kame_cli.backends.stt.decoder import WindowDecoder, Word, join_words
from kame_cli.backends.stt.model import SttModel
from kame_cli.events import FinalTranscript, PartialTranscript

TranscriptEvent = PartialTranscript | FinalTranscript

_ONSET_WINDOWS = 2
"""Consecutive speech windows (64 ms) that open a turn: a single click does not."""
_IDLE_KEEP_S = 1.0
"""Audio kept while no one speaks, for the pre-roll of the next turn."""
_MAX_CONTEXT_WORDS = 40
_SNAP_S = 0.12
"""How far from an aligned word end a cut may move to land in a pause."""
_MIN_KEEP_S = 1.0
"""A cut leaves at least this much audio in the window."""


@dataclass
class RecognizerStats:
    """Work done so far: `decode_s / audio_s` is the recognizer's real-time factor."""

    audio_s: float = 0.0
    decodes: int = 0
    decode_s: float = 0.0
    trims: int = 0
    turns: int = 0
    decode_ms: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))
    """Duration of each `process_iter` that decoded (the latest 10,000)."""


@dataclass
class _Turn:
    """One user turn, from speech onset to its closing silence."""

    start: int
    """Stream sample where its audio (pre-roll included) begins."""
    onset: int
    window_start: int
    speech: int = 0
    last_speech_end: int = 0
    silence_run: int = 0
    committed: list[Word] = field(default_factory=list)
    window_committed: list[Word] = field(default_factory=list)
    context: list[Word] = field(default_factory=list)
    tentative: list[Word] | None = None
    decoded_to: int = 0
    emitted: tuple[str, str] = ("", "")
    audio: np.ndarray | None = None
    """The window's audio, copied when the turn closes."""


class StreamingRecognizer:
    """Streaming Whisper with LocalAgreement-2 commits and VAD end of turn; not thread-safe."""

    def __init__(self, model: SttModel, cfg: SttConfig, now: Callable[[], float] | None = None) -> None:
        self.cfg = cfg
        self.decoder = WindowDecoder(model, cfg)
        self._now = now if now is not None else time.monotonic
        self._vad = StreamingVad()
        self._threshold = cfg.vad_threshold
        self._neg_threshold = max(cfg.vad_threshold - 0.15, 0.01)
        self._end_silence = round(cfg.end_silence_ms / 1000 * WHISPER_RATE)
        # The post-speech pad must fit inside the closing silence, and not reach the next onset.
        self._pad = min(round(cfg.speech_pad_ms / 1000 * WHISPER_RATE), self._end_silence // 2)
        self._min_speech = round(cfg.min_speech_ms / 1000 * WHISPER_RATE)
        self._min_audio = round(cfg.min_audio_s * WHISPER_RATE)
        self.stats = RecognizerStats()
        self._pos = 0
        self.init()

    # --- lifecycle --------------------------------------------------------------------------------

    def init(self) -> None:
        """Start a new stream; audio times go on from where the last one stopped."""
        self._vad.reset()
        self._audio = np.zeros(0, dtype=np.float32)
        self._audio_start = self._pos
        self._vad_pos = self._pos
        self._vad_origin = self._pos
        self._probs: list[float] = []
        self._probs_first = 0
        """Index of the VAD window `_probs[0]`; window k covers `_vad_origin + k * 512` onwards."""
        self._onset_run = 0
        self._onset_start = 0
        self._last_end = self._pos
        self._turn: _Turn | None = None
        self._closed: list[_Turn] = []

    def insert_audio(self, audio16k: np.ndarray) -> None:
        """Append 16 kHz mono audio; runs the VAD (cheap), never the decoder."""
        chunk = np.asarray(audio16k, dtype=np.float32).reshape(-1)
        self._audio = np.concatenate([self._audio, chunk])
        self._pos += len(chunk)
        self.stats.audio_s += len(chunk) / WHISPER_RATE
        probs = self._vad.push(chunk)
        self._probs.extend(probs.tolist())
        for p in probs:
            self._on_vad_window(float(p))
        if self._turn is None:
            self._forget_before(max(self._last_end, self._pos - round(_IDLE_KEEP_S * WHISPER_RATE)))

    def process_iter(self) -> list[TranscriptEvent]:
        """Finals of turns closed since the last call, then a re-decode of the open turn."""
        started = time.perf_counter()
        events: list[TranscriptEvent] = [e for t in self._closed if (e := self._finalize(t)) is not None]
        self._closed.clear()
        turn = self._turn
        if turn is not None and turn.speech >= self._min_audio and self._pos > turn.decoded_to:
            partial = self._decode_partial(turn)
            if partial is not None:
                events.append(partial)
        if events or turn is not None:
            elapsed = time.perf_counter() - started
            self.stats.decode_s += elapsed
            self.stats.decode_ms.append(elapsed * 1000)
        return events

    def finish(self) -> list[TranscriptEvent]:
        """End of input: close the open turn and return what is left (its final)."""
        if self._turn is not None:
            self._close(self._turn, min(self._pos, self._turn.last_speech_end + self._pad))
        events = self.process_iter()
        self.init()
        return events

    @property
    def audio_time(self) -> float:
        """Seconds of audio inserted since the first stream began."""
        return self._pos / WHISPER_RATE

    @property
    def in_turn(self) -> bool:
        return self._turn is not None

    @property
    def turn_closed(self) -> bool:
        """A turn ended and its final waits for `process_iter()`: call it now, not at the next step."""
        return bool(self._closed)

    # --- turn detection ---------------------------------------------------------------------------

    def _on_vad_window(self, prob: float) -> None:
        w_end = self._vad_pos + VAD_WINDOW
        w_start, self._vad_pos = self._vad_pos, w_end
        turn = self._turn
        if turn is None:
            if prob < self._threshold:
                self._onset_run = 0
                return
            if self._onset_run == 0:
                self._onset_start = w_start
            self._onset_run += 1
            if self._onset_run >= _ONSET_WINDOWS:
                start = max(self._audio_start, self._last_end, self._onset_start - self._pad)
                self._turn = _Turn(
                    start=start,
                    onset=self._onset_start,
                    window_start=start,
                    speech=w_end - self._onset_start,
                    last_speech_end=w_end,
                )
                self._onset_run = 0
            return
        # Silero's hysteresis: between the two thresholds, speech goes on but silence is not broken.
        if prob >= self._threshold or (prob >= self._neg_threshold and turn.silence_run == 0):
            turn.speech += VAD_WINDOW
            turn.last_speech_end = w_end
            turn.silence_run = 0
            return
        turn.silence_run += VAD_WINDOW
        if turn.silence_run >= self._end_silence:
            self._close(turn, min(self._pos, turn.last_speech_end + self._pad))

    def _close(self, turn: _Turn, end: int) -> None:
        self._turn = None
        self._last_end = end
        if turn.speech < self._min_speech:
            return
        turn.audio = self._slice(turn.window_start, end).copy()
        self._closed.append(turn)

    # --- decoding ---------------------------------------------------------------------------------

    def _decode_partial(self, turn: _Turn) -> PartialTranscript | None:
        audio = self._slice(turn.window_start, self._pos)
        decoded = self.decoder.decode(audio, prefix=turn.window_committed, context=turn.context)
        self.stats.decodes += 1
        words = list(decoded.words)
        if turn.tentative is not None:
            agreed = _common_prefix(turn.tentative, words)
            turn.committed += words[:agreed]
            turn.window_committed += words[:agreed]
            words = words[agreed:]
        turn.tentative = words
        turn.decoded_to = self._pos
        self._trim(turn)
        text = (join_words(turn.committed), join_words(turn.tentative or ()))
        if text == turn.emitted:
            return None
        turn.emitted = text
        return PartialTranscript(
            t=self._now(), committed=text[0], tentative=text[1], audio_end=self._pos / WHISPER_RATE
        )

    def _finalize(self, turn: _Turn) -> FinalTranscript | None:
        self.stats.turns += 1
        assert turn.audio is not None
        decoded = self.decoder.decode(turn.audio, prefix=turn.window_committed, context=turn.context)
        self.stats.decodes += 1
        text = decoded.text_after(turn.committed)
        if not any(ch.isalnum() for ch in text):
            return None
        return FinalTranscript(
            t=self._now(),
            text=text,
            audio_start=turn.onset / WHISPER_RATE,
            audio_end=turn.last_speech_end / WHISPER_RATE,
        )

    def _trim(self, turn: _Turn) -> None:
        """Cut the window after committed words, at a pause, once it is longer than `trim_window_s`."""
        window_s = (self._pos - turn.window_start) / WHISPER_RATE
        if window_s <= self.cfg.trim_window_s:
            return
        forced = window_s > self.cfg.max_window_s
        if forced and turn.tentative:
            # Nothing agreed for too long: take the last hypothesis as it is rather than grow forever.
            turn.committed += turn.tentative
            turn.window_committed += turn.tentative
            turn.tentative = []
        if not turn.window_committed:
            return
        ends = self.decoder.word_ends([*turn.window_committed, *(turn.tentative or ())])
        ends = ends[: len(turn.window_committed)]
        latest = self._pos - round(_MIN_KEEP_S * WHISPER_RATE)
        cut_word, cut_at = -1, 0
        for i, end_s in enumerate(ends):
            at, quiet = self._quietest(turn.window_start + round(end_s * WHISPER_RATE))
            if at <= latest and (quiet < self._neg_threshold or forced):
                cut_word, cut_at = i, at
        if cut_word < 0:
            return
        kept = turn.window_committed[: cut_word + 1]
        turn.context = [*turn.context, *kept][-_MAX_CONTEXT_WORDS:]
        turn.window_committed = turn.window_committed[cut_word + 1 :]
        turn.window_start = cut_at
        self._forget_before(cut_at)
        self.stats.trims += 1

    def _quietest(self, sample: int) -> tuple[int, float]:
        """The VAD window boundary near `sample` with the lowest speech probability."""
        reach = round(_SNAP_S * WHISPER_RATE)
        first = max(self._probs_first, (sample - reach - self._vad_origin) // VAD_WINDOW)
        last = min(
            self._probs_first + len(self._probs), (sample + reach - self._vad_origin) // VAD_WINDOW + 1
        )
        best, best_p = sample, 1.0
        for k in range(first, last):
            p = self._probs[k - self._probs_first]
            if p < best_p:
                best, best_p = self._vad_origin + k * VAD_WINDOW + VAD_WINDOW // 2, p
        return best, best_p

    # --- audio buffer -----------------------------------------------------------------------------

    def _slice(self, start: int, end: int) -> np.ndarray:
        return self._audio[start - self._audio_start : end - self._audio_start]

    def _forget_before(self, sample: int) -> None:
        """Drop audio and VAD history before `sample` (never what an open turn still needs)."""
        if self._turn is not None:
            sample = min(sample, self._turn.window_start)
        sample = min(sample, self._pos)
        if sample > self._audio_start:
            self._audio = self._audio[sample - self._audio_start :].copy()
            self._audio_start = sample
        window = min((sample - self._vad_origin) // VAD_WINDOW, self._probs_first + len(self._probs))
        if window > self._probs_first:
            del self._probs[: window - self._probs_first]
            self._probs_first = window


def _common_prefix(a: list[Word], b: list[Word]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x.key != y.key or not x.key:
            break
        n += 1
    return n
