"""The streaming recognizer's text rules, pure: words in, words out, no audio, no model.

- **Agreement** (LocalAgreement-2): what two consecutive hypotheses of a window agree on is
  committed; numbers agree by value ("Two" and "2"), and a commit never ends inside a number
  ("twenty" waits for "five") unless the latest hypothesis goes on with a word that cannot extend it.
- **Re-reads**: what a decode writes that only reads the window's audio again (the words just
  committed written again at its start, or a run of words the window already holds) is dropped.
- **The pause**: the words of a whole-turn decode that come after the turn's committed words.

The recognizer (`recognizer.py`) keeps the window, the VAD and the decodes, and asks these.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from kame_cli.backends.stt.text import NUMBER_WORDS, normalize_words

if TYPE_CHECKING:
    from kame_cli.backends.stt.decoder import Word

OVERLAP_MAX = 5
"""Longest run of just-committed words a decode may write again at its start (then dropped)."""
REREAD_MIN = 3
"""Words in a row that, already in the window, may start a re-read of it."""
REREAD_SURE = 5
"""Words in a row read again that make a re-read even when other words follow."""


# --- agreement ----------------------------------------------------------------------------------


def agreed_count(previous: Sequence[Word], latest: Sequence[Word]) -> int:
    """How many of `latest`'s first words to commit: those `previous` agrees on, outside a number."""
    return outside_number(latest, common_prefix(previous, latest))


def is_number(word: Word) -> bool:
    key = word.key
    return any(ch.isdigit() for ch in key) or key in NUMBER_WORDS


def extends_number(word: Word) -> bool:
    """Whether `word` may go on a number before it ("twenty" "five", "100" "and", "3" "point")."""
    return is_number(word) or word.key in ("and", "point")


def outside_number(words: Sequence[Word], agreed: int) -> int:
    """`agreed`, moved back before a number it would end in: the next word may extend it
    ("twenty" -> "twenty five", "100 and" -> "140"), so the number waits to be committed whole.
    A number the latest hypothesis already follows with a word that cannot extend it is whole
    ("1800" in "1800 he later"): kept, so it is not held to the end of the turn."""
    if agreed < len(words) and words[agreed].key and not extends_number(words[agreed]):
        return agreed
    while agreed > 0 and (
        is_number(words[agreed - 1])
        or (agreed > 1 and words[agreed - 1].key in ("and", "point") and is_number(words[agreed - 2]))
    ):
        agreed -= 1
    return agreed


def same_word(a: Word, b: Word) -> bool:
    """The same word for agreement; a number counts as the same however it is written ("Two" and
    "2", "1,800" and "1800"): decodes of a growing window often switch between the forms."""
    if a.key == b.key:
        return bool(a.key)
    return (is_number(a) or is_number(b)) and normalize_words(a.text) == normalize_words(b.text)


def common_prefix(a: Sequence[Word], b: Sequence[Word]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if not same_word(x, y):
            break
        n += 1
    return n


# --- re-reads -----------------------------------------------------------------------------------


def without_rereads(
    committed: Sequence[Word], window_committed: Sequence[Word], words: list[Word]
) -> list[Word]:
    """`words` (a decode's new words) without what only reads the window's audio again: the last
    1-5 `committed` words of the turn written again at their start, and everything from a re-read.

    A re-read is a run of `REREAD_MIN`+ words that the window's committed words or earlier new
    words already hold, and that either goes on to the end of the hypothesis or is `REREAD_SURE`
    words long. Whisper reading its window again runs to the window's end; a sentence that says
    "the invention of" twice goes on with other words after 3-4, and is kept (dropping it held 10
    words of `ljspeech_LJ001-0005` until the pause)."""
    keys_committed = [w.key for w in committed]
    for n in range(min(OVERLAP_MAX, len(keys_committed), len(words)), 0, -1):
        if [w.key for w in words[:n]] == keys_committed[-n:]:
            words = words[n:]
            break
    keys = [w.key for w in (*window_committed, *words)]
    first = len(window_committed)
    starts: dict[tuple[str, ...], list[int]] = {}
    for j in range(first - REREAD_MIN + 1):
        starts.setdefault(tuple(keys[j : j + REREAD_MIN]), []).append(j)
    for i in range(first, len(keys) - REREAD_MIN + 1):
        for j in starts.get(tuple(keys[i : i + REREAD_MIN]), ()):
            run = REREAD_MIN
            while i + run < len(keys) and j + run < i and keys[j + run] == keys[i + run]:
                run += 1
            if i + run == len(keys) or run >= REREAD_SURE:
                return words[: i - first]
        j = i - REREAD_MIN + 1
        starts.setdefault(tuple(keys[j : i + 1]), []).append(j)
    return words


# --- the pause ----------------------------------------------------------------------------------


def words_after_committed(committed: Sequence[Word], words: Sequence[Word]) -> list[Word]:
    """The words of a whole-turn decode after the turn's committed words, found by the last two of
    them (at their last place in `words`); none when the decode does not hold those two."""
    tail = [w.key for w in committed][-2:]
    if not tail:
        return list(words)
    keys = [w.key for w in words]
    starts = [i + len(tail) for i in range(len(keys) - len(tail) + 1) if keys[i : i + len(tail)] == tail]
    return list(words[starts[-1] :]) if starts else []
