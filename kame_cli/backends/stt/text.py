"""Transcript text for scoring: normalized words (numbers spelled out) and word error rate.

Whisper writes numbers as digits ("20th", "1,800", "$5"), references usually spell them out
("twentieth", "eighteen hundred", "five dollars"); scoring raw words would count each as errors the
listener never hears. `normalize_words` spells digits out the way they are usually read, and drops
what two spellings of the same number differ by ("and" inside a number, "oh" for zero).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_NON_WORD = re.compile(r"[^a-z0-9'.%$]+")
_NUMBER = re.compile(r"^\$?(\d[\d,]*)(?:\.(\d+))?(st|nd|rd|th|s)?(%)?$")
_UNITS = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SCALES = ((1_000_000_000, "billion"), (1_000_000, "million"), (1_000, "thousand"))
_ORDINALS = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}
NUMBER_WORDS = frozenset([*_UNITS, *_TENS[2:], "hundred", "thousand", "million", "billion", "oh"])
_ABBREVIATIONS = {"mr": "mister", "mrs": "missus", "dr": "doctor", "st": "saint", "vs": "versus"}


def _cardinal(n: int) -> list[str]:
    if n < 20:
        return [_UNITS[n]]
    if n < 100:
        return [_TENS[n // 10]] + ([_UNITS[n % 10]] if n % 10 else [])
    if n < 1000:
        return [_UNITS[n // 100], "hundred"] + (_cardinal(n % 100) if n % 100 else [])
    for scale, name in _SCALES:
        if n >= scale:
            return [*_cardinal(n // scale), name] + (_cardinal(n % scale) if n % scale else [])
    raise AssertionError(n)  # unreachable: n >= 1000 matches a scale


def _integer(digits: str) -> list[str]:
    """Digits as they are usually read: years in pairs, codes digit by digit, else a cardinal."""
    n = int(digits)
    if (digits.startswith("0") and len(digits) > 1) or len(digits) > 9:
        return [_UNITS[int(d)] for d in digits]
    if len(digits) == 4 and 1100 <= n <= 1999:  # 1908: nineteen oh eight; 1800: eighteen hundred
        high, low = divmod(n, 100)
        if low == 0:
            return [*_cardinal(high), "hundred"]
        return [*_cardinal(high), *(["zero"] if low < 10 else []), *_cardinal(low)]
    return _cardinal(n)


def _ordinal(words: list[str]) -> list[str]:
    last = words[-1]
    if last in _ORDINALS:
        return [*words[:-1], _ORDINALS[last]]
    return [*words[:-1], (last[:-1] + "ieth") if last.endswith("y") else last + "th"]


def _spell(token: str) -> list[str]:
    match = _NUMBER.match(token)
    if match is None:
        token = token.strip(".%$'")
        return [_ABBREVIATIONS.get(token, token)] if token else []
    whole, fraction, suffix, percent = match.groups()
    words = _integer(whole.replace(",", ""))
    if suffix in ("st", "nd", "rd", "th"):
        words = _ordinal(words)
    elif suffix == "s":  # the 1920s
        words = [*words[:-1], (words[-1][:-1] + "ies") if words[-1].endswith("y") else words[-1] + "s"]
    if fraction:
        words += ["point", *(_UNITS[int(d)] for d in fraction)]
    if token.startswith("$"):
        words.append("dollars")
    if percent:
        words.append("percent")
    return words


def normalize_words(text: str) -> list[str]:
    """Lower-case words without punctuation, numbers spelled out ("Mr. Smith paid $20!" ->
    ["mister", "smith", "paid", "twenty", "dollars"]); "oh" read as zero, "and" inside a number
    dropped ("one hundred and forty" -> ["one", "hundred", "forty"])."""
    text = text.lower().replace("-", " ")
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)  # 1,800 -> 1800
    text = re.sub(r"\.(?!\d)", " ", text)  # sentence periods; decimal points stay
    words: list[str] = []
    for token in _NON_WORD.sub(" ", text).split():
        words += _spell(token.strip("'"))
    words = ["zero" if w == "oh" else w for w in words if w]
    return [
        w
        for i, w in enumerate(words)
        if not (
            w == "and"
            and 0 < i < len(words) - 1
            and words[i - 1] in NUMBER_WORDS
            and words[i + 1] in NUMBER_WORDS
        )
    ]


def word_errors(reference: Sequence[str], hypothesis: Sequence[str]) -> int:
    """Substitutions + deletions + insertions turning `reference` into `hypothesis` (Levenshtein)."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, start=1):
        current = [i]
        for j, hyp in enumerate(hypothesis, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref != hyp)))
        previous = current
    return previous[-1]


def word_error_rate(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """WER over a set (jiwer): all errors over all reference words, on normalized text."""
    import jiwer

    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    pairs = [
        (" ".join(normalize_words(r)), " ".join(normalize_words(h)))
        for r, h in zip(references, hypotheses, strict=True)
    ]
    errors = total = 0
    for ref, hyp in pairs:
        ref_words = len(ref.split())
        total += ref_words
        if not ref_words:
            errors += len(hyp.split())  # jiwer refuses an empty reference: every word is an insertion
            continue
        out = jiwer.process_words(ref, hyp)
        errors += out.substitutions + out.deletions + out.insertions
    return errors / max(total, 1)


def duplicated_words(reference: Sequence[str], hypothesis: Sequence[str], n: int = 3) -> int:
    """Words of `hypothesis` inside a repeated n-gram (n words or more) that `reference` does not
    repeat as often: a passage written twice counts its second copy."""
    ref_counts: dict[tuple[str, ...], int] = {}
    for i in range(len(reference) - n + 1):
        gram = tuple(reference[i : i + n])
        ref_counts[gram] = ref_counts.get(gram, 0) + 1
    seen: dict[tuple[str, ...], int] = {}
    marked: set[int] = set()
    for i in range(len(hypothesis) - n + 1):
        gram = tuple(hypothesis[i : i + n])
        seen[gram] = seen.get(gram, 0) + 1
        if seen[gram] > max(ref_counts.get(gram, 0), 1):
            marked.update(range(i, i + n))
    return len(marked)
