"""Transcript text for scoring: normalized words and word error rate."""

from __future__ import annotations

import re
from collections.abc import Sequence

_NON_WORD = re.compile(r"[^a-z0-9']+")


def normalize_words(text: str) -> list[str]:
    """Lower-case words without punctuation ("Don't, Mr. Smith!" -> ["don't", "mr", "smith"])."""
    words = _NON_WORD.sub(" ", text.lower().replace("-", " ")).split()
    return [w.strip("'") for w in words if w.strip("'")]


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
    """WER over a set: all errors over all reference words, on normalized text."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    errors = total = 0
    for ref, hyp in zip(references, hypotheses, strict=True):
        ref_words = normalize_words(ref)
        errors += word_errors(ref_words, normalize_words(hyp))
        total += len(ref_words)
    return errors / max(total, 1)
