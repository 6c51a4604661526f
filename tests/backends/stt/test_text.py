from __future__ import annotations

import pytest

from kame_cli.backends.stt.text import normalize_words, word_error_rate, word_errors


def test_normalize_drops_case_and_punctuation_but_keeps_apostrophes() -> None:
    assert normalize_words("Don't panic, Mr. Smith!  Well-known?") == [
        "don't",
        "panic",
        "mr",
        "smith",
        "well",
        "known",
    ]


def test_word_errors_count_substitutions_insertions_deletions() -> None:
    assert word_errors(["a", "b", "c"], ["a", "b", "c"]) == 0
    assert word_errors(["a", "b", "c"], ["a", "x", "c"]) == 1
    assert word_errors(["a", "b", "c"], ["a", "c"]) == 1
    assert word_errors(["a", "b"], ["a", "b", "c", "d"]) == 2


def test_word_error_rate_pools_the_set() -> None:
    assert word_error_rate(["one two three four", "five"], ["one two three", "six"]) == pytest.approx(2 / 5)
    with pytest.raises(ValueError):
        word_error_rate(["a"], [])
