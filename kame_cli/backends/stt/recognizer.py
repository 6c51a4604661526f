"""The streaming recognizer: 16 kHz audio in, partial and final transcripts out.

Lifecycle as in whisper_streaming: `init()`, then any number of `insert_audio()` / `process_iter()`,
then `finish()`. One thread owns it. Silero VAD (run on every 32 ms window as audio arrives) opens a
turn at speech and closes it after `end_silence_ms` of silence; only turns are decoded, so silence
and noise cost nothing and produce no text.

Partials: while a turn is open, each `process_iter()` re-decodes its window (greedy by default)
and commits words by LocalAgreement-2 (what two consecutive hypotheses agree on). The committed
words are forced as the decoder's prefix, so each decode only writes the rest; what it writes is
first cleaned of re-reads, and no word is committed before the turn holds `min_commit_s` of audio.
The text rules (agreement, numbers, re-reads) are pure functions in `agreement.py`; this module
keeps the audio, the VAD, the window and the decodes. A turn's first partial
decode runs as soon as it holds `min_audio_s` of speech (`decode_due`), not at the next step.
Past `trim_window_s` the window is cut at a pause after its committed words, to keep decodes
cheap; the cut-off words prompt the next decodes.

Finals: once the speaker has paused for the post-speech pad, the whole turn is decoded in one pass
(beam `beam_size`) while the closing silence runs out, so the final is ready when VAD ends the
turn; it replaces the partials, as the same model offline would have heard the turn. That decode
is due at the pause point itself, and commits the turn's last words (a partial marked `pause`).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from kame_cli.backends.stt import agreement
from kame_cli.backends.stt.agreement import agreed_count, without_rereads, words_after_committed
from kame_cli.backends.stt.audio import VAD_WINDOW, WHISPER_RATE, SpeechProbabilities, StreamingVad
from kame_cli.backends.stt.config import SttConfig
from kame_cli.backends.stt.decoder import WindowDecoder, Word, drop_repeats, join_words
from kame_cli.backends.stt.model import SttModel
from kame_cli.backends.stt.text import normalize_words
from kame_cli.backends.stt.threshold import ChannelThresholds
from kame_cli.events import FinalTranscript, PartialTranscript

TranscriptEvent = PartialTranscript | FinalTranscript

_ONSET_WINDOWS = 2
"""Speech windows in a row (64 ms) that open a turn: a single click does not."""
_IDLE_KEEP_S = 1.0
"""Audio kept while no one speaks, for the pre-roll of the next turn."""
_MAX_CONTEXT_WORDS = 40
_SNAP_S = 0.12
"""How far from an aligned word end a cut may move to land in a pause."""
_MIN_KEEP_S = 1.0
"""A cut leaves at least this much audio in the window."""
_PIECE_S = 10.0
"""A window cut this far past the start of a turn's undecoded audio ends a piece of its final:
the piece is decoded then, once, so the final's own decode stays short however long the turn."""
_FINAL_TOKEN_RATE = 2.0
"""A whole-turn decode may write this many times more tokens a second than a partial one."""
_REVISE_FADE = WHISPER_RATE // 100
"""A revision is cross-faded in over its first 10 ms: no step where it meets the audio before it."""
_PIECE_MAX_S = 24.0
"""Longest audio decoded in one pass for a final (Whisper's input is 30 s at most)."""


@dataclass
class RecognizerStats:
    """Work done so far: `decode_s / audio_s` is the recognizer's real-time factor."""

    audio_s: float = 0.0
    decodes: int = 0
    decode_s: float = 0.0
    trims: int = 0
    turns: int = 0
    turn_decodes: int = 0
    """Decodes of whole turns (or pieces of them) for finals, included in `decodes`."""
    turn_decode_s: float = 0.0
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
    piece_start: int = 0
    """Stream sample where the audio not yet decoded for the final begins."""
    pieces: list[Word] = field(default_factory=list)
    pieces_text: str = ""
    """Final words and text of the turn's audio before `piece_start`."""
    prefinal: tuple[int, str] | None = None
    """(end sample, text) of the whole-turn decode made while the closing silence runs."""
    end: int = 0
    """Stream sample where the turn's audio ends, set when it closes."""
    audio: np.ndarray | None = None
    """The turn's audio from `piece_start`, copied when it closes (unless the prefinal holds)."""

    def has_prefinal(self, end: int) -> bool:
        """Whether the whole-turn decode made at the pause covers the turn's audio up to `end`."""
        return self.prefinal is not None and self.prefinal[0] == end


class StreamingRecognizer:
    """Streaming Whisper with LocalAgreement-2 commits and VAD end of turn; not thread-safe."""

    def __init__(
        self,
        model: SttModel,
        cfg: SttConfig,
        now: Callable[[], float] | None = None,
        vad: SpeechProbabilities | None = None,
    ) -> None:
        """`vad`: Silero (`StreamingVad`) unless given, e.g. probabilities recorded on a channel."""
        self.cfg = cfg
        self.decoder = WindowDecoder(model, cfg)
        self._now = now if now is not None else time.monotonic
        self._vad = vad if vad is not None else StreamingVad()
        self._thresholds = ChannelThresholds(cfg.vad_threshold, follow=cfg.vad_follow_channel)
        self._end_silence = round(cfg.end_silence_ms / 1000 * WHISPER_RATE)
        # The post-speech pad must fit inside the closing silence, and not reach the next onset.
        self._pad = min(round(cfg.speech_pad_ms / 1000 * WHISPER_RATE), self._end_silence // 2)
        self._min_speech = round(cfg.min_speech_ms / 1000 * WHISPER_RATE)
        self._min_audio = round(cfg.min_audio_s * WHISPER_RATE)
        self._min_commit = round(cfg.min_commit_s * WHISPER_RATE)
        self.stats = RecognizerStats()
        self._pos = 0
        self.init()

    # --- lifecycle --------------------------------------------------------------------------------

    def init(self) -> None:
        """Start a new stream; audio times go on from where the last one stopped."""
        self._vad.reset()
        self._thresholds.reset()
        self._audio: np.ndarray = np.zeros(0, dtype=np.float32)
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
        if turn is not None and turn.speech >= self._min_audio:
            end = turn.last_speech_end + self._pad
            if self._pos >= end:
                # The speaker has paused: decode the whole turn now, so that its final is ready
                # when the closing silence runs out (and redo it only if speech comes back).
                if not turn.has_prefinal(end):
                    words, text = self._whole_turn(turn, self._slice(turn.piece_start, end))
                    turn.prefinal = (end, text)
                    partial = self._commit_prefinal(turn, words)
                    if partial is not None:
                        events.append(partial)
            elif self._pos > turn.decoded_to:
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

    def revise_audio(self, end: int, audio16k: np.ndarray) -> None:
        """The audio up to stream sample `end` was `audio16k`, not what was inserted: what is still held
        of it is replaced (cross-faded in over `_REVISE_FADE`), and the next decodes hear it. The VAD's
        verdicts on it stand; the open turn's whole-turn decode made over it is made again (a closed
        turn's audio was copied when it closed: it stands as heard)."""
        audio = np.asarray(audio16k, dtype=np.float32).reshape(-1)
        start = end - audio.shape[0]
        lo, hi = max(start, self._audio_start), min(end, self._pos)
        if hi <= lo:
            return
        new = audio[lo - start : hi - start].copy()
        old = self._audio[lo - self._audio_start : hi - self._audio_start]
        fade = min(_REVISE_FADE, new.shape[0])
        ramp = np.linspace(0.0, 1.0, fade, endpoint=False, dtype=np.float32)
        new[:fade] = ramp * new[:fade] + (1.0 - ramp) * old[:fade]
        old[:] = new
        turn = self._turn
        if turn is not None and turn.prefinal is not None and lo < turn.prefinal[0]:
            turn.prefinal = None

    @property
    def position(self) -> int:
        """Stream samples (16 kHz) inserted since the first stream began."""
        return self._pos

    @property
    def audio_time(self) -> float:
        """Seconds of audio inserted since the first stream began."""
        return self._pos / WHISPER_RATE

    @property
    def in_turn(self) -> bool:
        return self._turn is not None

    @property
    def decode_due(self) -> bool:
        """A decode that should not wait for the next step: call `process_iter()` now. Due are a
        closed turn's final, a turn's first partial once it holds `min_audio_s` of speech (its
        first words are committed a step after it), and the whole-turn decode at a pause (it
        commits the turn's last words)."""
        if self._closed:
            return True
        turn = self._turn
        if turn is None or turn.speech < self._min_audio:
            return False
        end = turn.last_speech_end + self._pad
        if self._pos >= end:
            return not turn.has_prefinal(end)
        return turn.decoded_to == 0

    # --- turn detection ---------------------------------------------------------------------------

    def _on_vad_window(self, prob: float) -> None:
        w_end = self._vad_pos + VAD_WINDOW
        w_start, self._vad_pos = self._vad_pos, w_end
        turn = self._turn
        thresholds = self._thresholds
        if turn is None:
            # On a channel whose speech reads low, the same hysteresis as in a turn: an onset run
            # begins at the threshold and goes on above the lower one (a phone line's speech may
            # read 0.52, 0.46, 0.48, 0.44, 0.50). Not on clear speech: residual echo under double
            # talk reads 0.3-0.5, with single windows at 0.51, and would open turns early.
            goes_on = self._onset_run > 0 and thresholds.lowered
            if prob < (thresholds.neg_threshold if goes_on else thresholds.threshold):
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
                    piece_start=start,
                    speech=w_end - self._onset_start,
                    last_speech_end=w_end,
                )
                self._onset_run = 0
            return
        # Silero's hysteresis: between the two thresholds, speech goes on but silence is not broken.
        speech = prob >= thresholds.threshold or (prob >= thresholds.neg_threshold and turn.silence_run == 0)
        thresholds.heard_in_turn(prob)
        if speech:
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
        turn.end = end
        if not turn.has_prefinal(end):
            turn.audio = self._slice(turn.piece_start, end).copy()
        self._closed.append(turn)

    # --- decoding ---------------------------------------------------------------------------------

    def _decode_partial(self, turn: _Turn) -> PartialTranscript | None:
        audio = self._slice(turn.window_start, self._pos)
        decoded = self.decoder.decode(
            audio, prefix=turn.window_committed, context=turn.context, beam_size=self.cfg.partial_beam_size
        )
        self.stats.decodes += 1
        words = self._without_rereads(turn, list(decoded.words))
        if turn.tentative is not None and self._pos - turn.start >= self._min_commit:
            agreed = agreed_count(turn.tentative, words)
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
        return self._partial(turn)

    def _commit_prefinal(self, turn: _Turn, words: list[Word]) -> PartialTranscript | None:
        """Commit what the whole-turn decode has after the last committed words (found by their
        last two): the turn's last words need not wait for the closing silence to run out. The
        partial is marked `pause` even when there is nothing to add (the partials already held the
        turn's words): it tells the oracle that the user has stopped, as a final would."""
        rest = words_after_committed(turn.committed, words)
        if rest:
            turn.committed += rest
            turn.window_committed += rest
            turn.tentative = []
            turn.emitted = (join_words(turn.committed), "")
        elif not any(turn.emitted):
            return None
        return self._partial(turn, pause=True)

    def _partial(self, turn: _Turn, *, pause: bool = False) -> PartialTranscript:
        """The turn's partial as last emitted (`turn.emitted`), stamped now."""
        committed, tentative = turn.emitted
        return PartialTranscript(
            t=self._now(),
            committed=committed,
            tentative=tentative,
            audio_end=self._pos / WHISPER_RATE,
            audio_start=turn.onset / WHISPER_RATE,
            pause=pause,
        )

    def _without_rereads(self, turn: _Turn, words: list[Word]) -> list[Word]:
        """`words` (a decode's new words) without what only reads the window's audio again."""
        return without_rereads(turn.committed, turn.window_committed, words)

    def _decode_piece(self, turn: _Turn, audio: np.ndarray, context: list[Word]) -> tuple[list[Word], str]:
        """Words and text of `audio` (part of `turn`) as its final has them: one decode, no prefix."""
        started = time.perf_counter()
        # Names and punctuation may take more tokens than the partials' cap (6 a second cut
        # "...used to flash his teeth." after "flash"); the room this leaves for Whisper to read
        # the turn twice ("...afternoon. It happened to him...") is closed by a re-read cut that
        # looks back to the turn's first word.
        decoded = self.decoder.decode(
            audio,
            context=context[-_MAX_CONTEXT_WORDS:],
            token_rate=_FINAL_TOKEN_RATE * self.cfg.max_tokens_per_s,
            loop_reach=None,
        )
        self.stats.decodes += 1
        self.stats.turn_decodes += 1
        words = self.decoder.without_words_past_audio(drop_repeats(decoded.words))
        self.stats.turn_decode_s += time.perf_counter() - started
        decoded = replace(decoded, words=tuple(words))
        return words, decoded.text_after(())

    def _whole_turn(self, turn: _Turn, audio: np.ndarray) -> tuple[list[Word], str]:
        """The final words and text of `turn`: its decoded pieces, then `audio` (from
        `piece_start` on) decoded at once, or in `_PIECE_MAX_S` parts when it is longer."""
        words, texts = list(turn.pieces), [turn.pieces_text]
        step = round(_PIECE_MAX_S * WHISPER_RATE)
        for start in range(0, len(audio), step):
            new_words, text = self._decode_piece(turn, audio[start : start + step], words)
            words += new_words
            texts.append(text)
        return words, " ".join(t for t in texts if t)

    def _finalize(self, turn: _Turn) -> FinalTranscript | None:
        self.stats.turns += 1
        if turn.prefinal is not None and turn.prefinal[0] == turn.end:
            text = turn.prefinal[1]
        else:
            assert turn.audio is not None
            text = self._whole_turn(turn, turn.audio)[1]
        committed = turn.emitted[0]
        if not any(ch.isalnum() for ch in text):
            # The whole turn read as no speech: keep what the partials committed, if anything.
            text = committed
        if not any(ch.isalnum() for ch in text):
            return None
        committed_words = normalize_words(committed)
        return FinalTranscript(
            t=self._now(),
            text=text,
            audio_start=turn.onset / WHISPER_RATE,
            audio_end=turn.last_speech_end / WHISPER_RATE,
            partial_text=" ".join(p for p in turn.emitted if p),
            revised=normalize_words(text)[: len(committed_words)] != committed_words,
        )

    def _trim(self, turn: _Turn) -> None:
        """Cut the window after committed words, at a pause, once it is longer than `trim_window_s`."""
        window_s = (self._pos - turn.window_start) / WHISPER_RATE
        if window_s <= self.cfg.trim_window_s:
            return
        forced = window_s > self.cfg.max_window_s
        # Fluent speech may leave no pause: past half as long again, cut at the quietest word end.
        relaxed = forced or window_s > 1.5 * self.cfg.trim_window_s
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
        cut_word, cut_at, paused = -1, 0, False
        for i, end_s in enumerate(ends):
            at, quiet = self._quietest(turn.window_start + round(end_s * WHISPER_RATE))
            paused_here = quiet < self._thresholds.neg_threshold
            if at <= latest and (paused_here or relaxed):
                cut_word, cut_at, paused = i, at, paused_here
        if cut_word < 0:
            return
        kept = turn.window_committed[: cut_word + 1]
        turn.context = [*turn.context, *kept][-_MAX_CONTEXT_WORDS:]
        turn.window_committed = turn.window_committed[cut_word + 1 :]
        turn.window_start = cut_at
        self.stats.trims += 1
        if paused and cut_at - turn.piece_start >= _PIECE_S * WHISPER_RATE:
            # A piece of the final, decoded now once for all (at a pause, so that no word is split):
            # later decodes of the turn start here.
            words, text = self._decode_piece(turn, self._slice(turn.piece_start, cut_at), turn.pieces)
            turn.pieces += words
            turn.pieces_text = " ".join(t for t in (turn.pieces_text, text) if t)
            turn.piece_start = cut_at
            self._forget_before(cut_at)

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
            sample = min(sample, self._turn.piece_start)  # what the final has yet to decode
        sample = min(sample, self._pos)
        if sample > self._audio_start:
            self._audio = self._audio[sample - self._audio_start :].copy()
            self._audio_start = sample
        window = min((sample - self._vad_origin) // VAD_WINDOW, self._probs_first + len(self._probs))
        if window > self._probs_first:
            del self._probs[: window - self._probs_first]
            self._probs_first = window


# The agreement rules under the names the recognizer's tests import them by.
_common_prefix = agreement.common_prefix
_outside_number = agreement.outside_number
