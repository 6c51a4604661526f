from __future__ import annotations

import pytest

from kame_cli.backends.stt.text import duplicated_words, normalize_words, word_error_rate, word_errors


def test_normalize_drops_case_and_punctuation_but_keeps_apostrophes() -> None:
    assert normalize_words("Don't panic, Mr. Smith!  Well-known?") == [
        "don't",
        "panic",
        "mister",
        "smith",
        "well",
        "known",
    ]


@pytest.mark.parametrize(
    ("digits", "words"),
    [
        ("For the 20th time", "for the twentieth time"),
        (
            "Out of his 1800, he laid aside 1,600.",
            "out of his eighteen hundred he laid aside sixteen hundred",
        ),
        ("140 miles", "one hundred and forty miles"),
        ("Monday March 16 1908", "monday march sixteen nineteen oh eight"),
        ("It cost $25.", "it cost twenty five dollars"),
        ("3.5% in the 1920s", "three point five percent in the nineteen twenties"),
        ("Call 0800", "call oh eight zero zero"),
    ],
)
def test_numbers_score_the_same_in_digits_and_in_words(digits, words) -> None:
    assert normalize_words(digits) == normalize_words(words)
    assert word_error_rate([words], [digits]) == 0.0


def test_and_is_kept_outside_numbers() -> None:
    assert normalize_words("bread and butter, two and three") == ["bread", "and", "butter", "two", "three"]


def test_word_errors_count_substitutions_insertions_deletions() -> None:
    assert word_errors(["a", "b", "c"], ["a", "b", "c"]) == 0
    assert word_errors(["a", "b", "c"], ["a", "x", "c"]) == 1
    assert word_errors(["a", "b", "c"], ["a", "c"]) == 1
    assert word_errors(["a", "b"], ["a", "b", "c", "d"]) == 2


def test_word_error_rate_pools_the_set() -> None:
    assert word_error_rate(["one two three four", "five"], ["one two three", "six"]) == pytest.approx(2 / 5)
    assert word_error_rate(["a b", ""], ["a b", "c"]) == pytest.approx(1 / 2)
    with pytest.raises(ValueError):
        word_error_rate(["a"], [])


def test_duplicated_words_count_a_passage_written_twice() -> None:
    ref = ["the", "train", "should", "depart", "from", "cambridge", "and", "should", "go", "to", "london"]
    twice = ["the", "train", "should", "go", "the", "train", "should", "depart", "from", "cambridge"]
    assert duplicated_words(ref, twice) == 3
    assert duplicated_words(ref, ref) == 0
    chant = ["we", "will", "we", "will", "rock", "you", "we", "will", "we", "will", "rock", "you"]
    assert duplicated_words(chant, chant) == 0, "what the reference repeats is no duplicate"
