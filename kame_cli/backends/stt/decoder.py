"""One Whisper decode of a short window, on the real audio only (no 30 s padding), with guards.

faster-whisper's `transcribe()` pads every call to 30 s of audio: ~0.5 s per call on a small CPU,
whatever the window. Here the window's log-Mel features are padded with silence to only
`max(audio + pad_s, min_encoder_s)`, and CTranslate2's Whisper encodes and decodes that directly.
Short inputs tempt Whisper into repeating itself, hence the guards: greedy/beam decoding at
temperature 0, a cap on new tokens proportional to the audio, a cut where Whisper starts reading
the window again (`cut_loop`), and the no-speech test of `transcribe()`.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from kame_cli.backends.stt.audio import WHISPER_RATE
from kame_cli.backends.stt.config import SttConfig
from kame_cli.backends.stt.model import SttModel

if TYPE_CHECKING:
    import ctranslate2

_FRAMES_PER_S = 100
"""Mel frames per second (hop 160 at 16 kHz)."""
_ENCODER_MAX_FRAMES = 3000
_TOKENS_PER_S = 50
"""Encoder positions per second: alignment time steps."""
_MAX_LENGTH = 448
_LENGTH_PER_TOKEN = 2
"""CTranslate2 4.8's Whisper `generate` does not count `max_length` as prompt + new tokens: measured
on tiny.en, it returned `max_length // 2` tokens (forced prefix included) after a bare start
sequence, and `max_length - 31` after 29 tokens of previous text. Asked for `len(prompt) + max_new`,
a decode wrote about half its cap, and nothing once the window's committed words filled that half:
on fast speech the partials fell a second behind the audio. So it is asked for more than enough
(`len(prompt) + 2 * (prefix + max_new)` covers both) and the cap is applied to what it returns."""
MAX_CONTEXT_TOKENS = 64
_NO_SPEECH_PROB = 0.6
_LOW_LOGPROB = -1.0
_LOOP_REACH = 8
"""How many words back a repeated tail is looked for."""
_LOOP_RUN = 4
"""Words in a row read again that make a re-read, when more follow (fewer: the whole tail)."""
_AT_AUDIO_END_S = 0.1
"""A word aligned to end this close to the end of the decoded audio ends with the audio."""
_REPEAT_MIN = 3
"""Shortest phrase whose copy, right after it, `drop_repeats` takes for a loop."""
_PAIR = 2
_PAIR_COPIES = 3
"""Copies in a row of a two-word phrase that `drop_repeats` takes for a loop (two are speech)."""


@dataclass(frozen=True, slots=True)
class Word:
    """A word as Whisper wrote it (leading space included), its token ids, and punctuation after it.

    The punctuation is kept apart: a window that ends mid-sentence makes Whisper close it with a
    period, so trailing punctuation is neither compared, nor committed, nor forced as a prefix.
    """

    text: str
    tokens: tuple[int, ...]
    punct: str = ""

    @property
    def key(self) -> str:
        """The word for comparisons: lower case, no punctuation."""
        return re.sub(r"[^\w']+", "", self.text.lower())


def join_words(words: Sequence[Word], punctuated: bool = False) -> str:
    return "".join(w.text + (w.punct if punctuated else "") for w in words).strip()


@dataclass(frozen=True, slots=True)
class Decoded:
    """The words a decode added after the forced prefix."""

    words: tuple[Word, ...]
    lead_punct: str
    """Punctuation written right after the prefix, before any new word (e.g. the final "?")."""
    no_speech_prob: float
    avg_logprob: float

    def text_after(self, prefix: Sequence[Word]) -> str:
        """The prefix (unpunctuated) and these words (punctuated) as one text."""
        return (join_words(prefix) + self.lead_punct + "".join(w.text + w.punct for w in self.words)).strip()


class WindowDecoder:
    """Decodes a window of 16 kHz audio, continuing after already committed words."""

    def __init__(self, model: SttModel, cfg: SttConfig) -> None:
        self.model = model
        self.cfg = cfg
        tok = model.tokenizer
        self._suppress = sorted(
            {*tok.non_speech_tokens, tok.transcribe, tok.translate, tok.sot, tok.sot_prev, tok.sot_lm}
            | ({tok.no_speech} if tok.no_speech is not None else set())
        )
        self._encoded: tuple[ctranslate2.StorageView, int] | None = None

    def _encode(self, audio: np.ndarray) -> tuple[ctranslate2.StorageView, int]:
        import ctranslate2

        mel = self.model.features(audio, padding=160)[:, :-1]
        frames = min(mel.shape[1], _ENCODER_MAX_FRAMES)
        target = max(
            frames + round(self.cfg.pad_s * _FRAMES_PER_S), round(self.cfg.min_encoder_s * _FRAMES_PER_S)
        )
        target = min(target, _ENCODER_MAX_FRAMES)
        # Digital silence gives the floor of the normalized log-Mel: (max - 8) / 4 + 1 = max - 2.
        floor = float(mel.max()) - 2.0
        mel = np.pad(
            mel[:, :target], ((0, 0), (0, target - min(mel.shape[1], target))), constant_values=floor
        )
        features = ctranslate2.StorageView.from_array(np.ascontiguousarray(mel[None], dtype=np.float32))
        encoded = self.model.whisper.encode(features, to_cpu=False)
        self._encoded = (encoded, frames)
        return encoded, frames

    def _prompt(self, prefix: Sequence[Word], context: Sequence[Word]) -> list[int]:
        tok = self.model.tokenizer
        prompt: list[int] = []
        context_tokens = [t for w in context for t in w.tokens][-MAX_CONTEXT_TOKENS:]
        if context_tokens:
            prompt = [tok.sot_prev, *context_tokens]
        prompt += [*tok.sot_sequence, tok.no_timestamps]
        prompt += [t for w in prefix for t in w.tokens]
        return prompt

    def decode(
        self,
        audio: np.ndarray,
        prefix: Sequence[Word] = (),
        context: Sequence[Word] = (),
        beam_size: int | None = None,
        token_rate: float | None = None,
        loop_reach: int | None = _LOOP_REACH,
    ) -> Decoded:
        """Words after `prefix` (forced, already committed) in `audio`; `context` is earlier text.

        `beam_size` defaults to the profile's (that of finals); `token_rate` (new tokens per second
        of audio at most) to `max_tokens_per_s`; `loop_reach` bounds how far back `cut_loop` looks
        for a re-read (None: to the first word)."""
        encoded, _ = self._encode(audio)
        prompt = self._prompt(prefix, context)
        seconds = len(audio) / WHISPER_RATE
        prefix_tokens = sum(len(w.tokens) for w in prefix)
        rate = token_rate or self.cfg.max_tokens_per_s
        max_new = max(4, math.ceil(rate * seconds) + 3 - prefix_tokens)
        max_length = min(_MAX_LENGTH, len(prompt) + _LENGTH_PER_TOKEN * (prefix_tokens + max_new))
        if max_length <= len(prompt):
            return Decoded((), "", 0.0, 0.0)
        result = self.model.whisper.generate(
            encoded,
            [prompt],
            beam_size=beam_size or self.cfg.beam_size,
            max_length=max_length,
            return_scores=True,
            return_no_speech_prob=True,
            # Blank suppression forbids end-of-text at the first step: wrong after a forced prefix.
            suppress_blank=not prefix,
            suppress_tokens=self._suppress,
        )[0]
        tokens = [t for t in result.sequences_ids[0] if t < self.model.tokenizer.eot]
        # CTranslate2 returns the forced prefix (the prompt after the start sequence) with the new tokens.
        forced = [t for w in prefix for t in w.tokens]
        if tokens[: len(forced)] == forced:
            tokens = tokens[len(forced) :]
        tokens = tokens[:max_new]
        avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1) if result.scores else 0.0
        if result.no_speech_prob > _NO_SPEECH_PROB and avg_logprob < _LOW_LOGPROB:
            return Decoded((), "", result.no_speech_prob, avg_logprob)
        lead, words = self.split_words(tokens)
        return Decoded(tuple(cut_loop(prefix, words, loop_reach)), lead, result.no_speech_prob, avg_logprob)

    def split_words(self, tokens: Sequence[int]) -> tuple[str, list[Word]]:
        """(punctuation before the first word, words): a word starts at a leading space; trailing
        punctuation pieces go to its `punct`, inner ones (U.S., don't) stay in its text."""
        if not tokens:
            return "", []
        pieces, piece_tokens = self.model.tokenizer.split_tokens_on_unicode(list(tokens))
        groups: list[list[tuple[str, list[int]]]] = []
        lead: list[str] = []
        for text, toks in zip(pieces, piece_tokens, strict=True):
            if text.startswith(" ") or (not groups and not _is_punct(text)):
                groups.append([(text if text.startswith(" ") else " " + text, toks)])
            elif groups:
                groups[-1].append((text, toks))
            else:
                lead.append(text.strip())
        words = []
        for group in groups:
            cut = len(group)
            while cut > 1 and _is_punct(group[cut - 1][0]):
                cut -= 1
            words.append(
                Word(
                    text="".join(t for t, _ in group[:cut]),
                    tokens=tuple(tok for _, toks in group[:cut] for tok in toks),
                    punct="".join(t for t, _ in group[cut:]).strip(),
                )
            )
        return "".join(lead), words

    def align_text(self, audio: np.ndarray, text: str) -> list[tuple[Word, float]]:
        """Forced alignment of a known transcript: each word of `text` with its end time (s) in `audio`."""
        self._encode(audio)
        _, words = self.split_words(self.model.tokenizer.encode(" " + text.strip()))
        return list(zip(words, self.word_ends(words), strict=True))

    def without_words_past_audio(self, words: list[Word]) -> list[Word]:
        """`words` (of the last decode) without a tail that Whisper wrote past its audio: after the
        last word that ends at the audio's end, the words aligned to that same instant, of no
        length. The encoder's input goes on in padded silence, where tiny.en may write words the
        turn never had ("...Thursday the 1980s, the last few days," for a turn that ends "Thursday
        the eighteenth"); the alignment, bounded by the real audio, puts them all at its end. The
        first word there is kept: it is often the real last word, stretched over the pause."""
        if len(words) < 2 or self._encoded is None:
            return words
        ends = self.word_ends(words)
        audio_s = self._encoded[1] / _FRAMES_PER_S
        if len(ends) != len(words) or ends[-1] < audio_s - _AT_AUDIO_END_S:
            return words
        keep = len(words)
        while keep > 1 and ends[keep - 2] == ends[-1]:
            keep -= 1
        return words[:keep]

    def word_ends(self, words: Sequence[Word]) -> list[float]:
        """End time (s, from the window start) of each of `words` in the last decoded window.

        Cross-attention alignment (CTranslate2's `align`), as faster-whisper's word timestamps.
        """
        if not words or self._encoded is None:
            return []
        encoded, frames = self._encoded
        tokens = [t for w in words for t in w.tokens]
        tok = self.model.tokenizer
        result = self.model.whisper.align(encoded, list(tok.sot_sequence), [tokens], frames)[0]
        text_idx = np.array([a[0] for a in result.alignments])
        time_idx = np.array([a[1] for a in result.alignments])
        if len(text_idx) == 0:
            return []
        jumps = np.pad(np.diff(text_idx), (1, 0), constant_values=1).astype(bool)
        jump_times = time_idx[jumps] / _TOKENS_PER_S
        boundaries = np.cumsum([len(w.tokens) for w in words])
        last = len(jump_times) - 1
        return [float(jump_times[min(b, last)]) for b in boundaries]


def _is_punct(text: str) -> bool:
    stripped = text.strip()
    return bool(stripped) and all(ch in string.punctuation for ch in stripped)


def cut_loop(prefix: Sequence[Word], words: list[Word], reach: int | None = _LOOP_REACH) -> list[Word]:
    """Cut the new words where Whisper starts reading the window again: a tail that repeats earlier
    words verbatim ("produced the book produced the"), a last word that is the window's first
    ("then in the same operation then"), or one word said three times in a row.

    On short or padded windows tiny models loop like this; two decodes may loop alike, and
    LocalAgreement would then commit the loop.
    """
    keys = [w.key for w in (*prefix, *words)]
    first_new = len(prefix)
    for p in range(max(first_new, 1), len(keys)):
        tail = keys[p:]
        first = 0 if reach is None else max(0, p - reach)
        # Far back (past `_LOOP_REACH`), two words again are likely real speech: three at least.
        near = max(0, p - _LOOP_REACH)
        if len(tail) >= 2 and any(
            _repeats(tail, keys[q:p]) for q in range(first, p) if q >= near or len(tail) >= 3
        ):
            return words[: p - first_new]
        if len(tail) == 1 and p >= 3 and _reads_again(tail, keys[:p]):
            return words[: p - first_new]  # one word, but the window's first: a restart
        if p >= 2 and keys[p] == keys[p - 1] == keys[p - 2]:
            return words[: p - first_new]
    return words


def drop_repeats(words: Sequence[Word]) -> list[Word]:
    """`words` without the copies of a phrase of `_REPEAT_MIN`+ words written twice in a row, or
    of two words written three times in a row (one copy kept).

    With a whole turn to read, tiny.en can go round a phrase once more and then go on
    ("Montreal but, but Montreal but, but Montreal Force Liner", or on faster speech "Montreal,
    but... Montreal, but... Montreal, but... Montreal"), which `cut_loop` keeps: it cuts only a
    tail. People repeat a word or two ("New York, New York", "I think, I think"), which stay; no
    reference transcript of the 84 real-speech clips (1549 words) repeats a phrase of three or
    more, or one of two words three times. The last copy's trailing punctuation goes to the phrase
    it repeated, so a sentence still ends where it did."""
    words = list(words)
    keys = [w.key for w in words]
    i = 0
    while i < len(keys):
        for n in range(_PAIR, (len(keys) - i) // 2 + 1):
            copies = 1
            while keys[i : i + n] == keys[i + copies * n : i + (copies + 1) * n]:
                copies += 1
            if copies >= (2 if n >= _REPEAT_MIN else _PAIR_COPIES):
                last = words[i + copies * n - 1]
                if last.punct:
                    words[i + n - 1] = Word(words[i + n - 1].text, words[i + n - 1].tokens, last.punct)
                del words[i + n : i + copies * n]
                del keys[i + n : i + copies * n]
                break
        else:
            i += 1
    return words


def _repeats(tail: list[str], earlier: list[str]) -> bool:
    """`tail` reads `earlier` again: all of it, or its first `_LOOP_RUN` words when longer (a
    decode may loop several times over: "750. They only lifted 750. They only lifted...")."""
    if len(tail) > _LOOP_RUN:
        short = len(earlier) < _LOOP_RUN
        return earlier[:_LOOP_RUN] == tail[:_LOOP_RUN] or (short and _cycles(tail, earlier))
    # A short phrase read again and begun once more ("Montreal Force Liner Montreal" after
    # "Montreal Force Liner"): cut at the copy's start, not a word into it.
    return _reads_again(tail, earlier) or (len(earlier) < len(tail) and _cycles(tail, earlier))


def _cycles(tail: list[str], earlier: list[str]) -> bool:
    """`tail` is `earlier` (2 or 3 words) over and over to the end: a short phrase looped more than
    once ("aligner. Very bad aligner. Very bad aligner. Very bad"), which the first `_LOOP_RUN`
    words cannot show. Real speech repeats a phrase, then goes on: "I think, I think we" is kept."""
    period = len(earlier)
    if period < 2:
        return False
    *whole, last = tail
    return all(w == earlier[i % period] for i, w in enumerate(whole)) and earlier[
        len(whole) % period
    ].startswith(last)


def _reads_again(tail: list[str], earlier: list[str]) -> bool:
    """`tail` repeats the start of `earlier`; its last word may be cut short ("typ" for "typography")."""
    if len(earlier) < len(tail):
        return False
    *whole, last = tail
    return earlier[: len(whole)] == whole and earlier[len(whole)].startswith(last)
