"""The recognizer's text rules alone: words in, words out, no audio and no model.

(test_commits.py runs the same rules on words the real tokenizer makes, inside the recognizer.)
"""

from __future__ import annotations

from kame_cli.backends.stt.agreement import (
    agreed_count,
    same_word,
    without_rereads,
    words_after_committed,
)
from kame_cli.backends.stt.decoder import Word


def words(text: str) -> list[Word]:
    out = []
    for raw in text.split():
        bare = raw.rstrip(".,?!")
        out.append(Word(" " + bare, (), raw[len(bare) :]))
    return out


def shown(ws: list[Word]) -> str:
    return " ".join(w.text.strip() for w in ws)


def agreed(previous: str, latest: str) -> str:
    new = words(latest)
    return shown(new[: agreed_count(words(previous), new)])


def test_two_hypotheses_commit_what_they_agree_on() -> None:
    assert agreed("the train should", "the train should go") == "the train should"
    assert agreed("the brain", "the train should go") == "the"
    assert agreed("", "the train") == ""
    assert agreed("Paris.", "paris is") == "paris", "case and punctuation aside"


def test_numbers_agree_by_value_and_are_committed_whole() -> None:
    assert agreed("Two days ago", "2 days ago Gene") == "2 days ago"
    assert agreed("Out of his 1,800", "Out of his 1800 he later") == "Out of his 1800"
    assert agreed("it cost twenty", "it cost twenty five dollars") == "it cost"
    assert agreed("it cost 100", "it cost 100 and 40") == "it cost"
    assert agreed("pi is 3", "pi is 3 point 14") == "pi is"
    assert agreed("it cost 100 dollars", "it cost 100 dollars and") == "it cost 100 dollars"
    assert same_word(words("Two")[0], words("2")[0]) and not same_word(words("two")[0], words("3")[0])


def test_rereads_are_dropped() -> None:
    def clean(committed: str, new: str) -> str:
        return shown(without_rereads(words(committed), words(committed), words(new)))

    assert clean("the train should go", "should go to London") == "to London"
    assert clean("the train should depart from Cambridge", "and the train should depart") == "and"
    assert clean("a wildly exciting time", "was his during the week") == "was his during the week"
    assert clean("the more you eat", "the more") == "the more", "two words again are no re-read"
    said_twice = "the invention of the art of printing"
    assert clean("the invention of movable letters is seen as", said_twice) == said_twice
    assert clean("at sea Monday March 16 1908", "at sea Monday March") == ""
    assert clean("the train should depart from Cambridge", "and the train should depart from Leeds") == "and"


def test_a_reread_of_words_cut_from_the_window_is_not_one() -> None:
    # The turn committed them, but the window no longer holds them (a trim cut them off): only the
    # overlap right after the committed words is dropped.
    kept = without_rereads(words("we went to the old mill"), [], words("the old mill was closed"))
    assert shown(kept) == "was closed"
    kept = without_rereads(words("we went to the old mill"), [], words("we went to the sea"))
    assert shown(kept) == "we went to the sea"


def test_the_pause_decode_adds_what_follows_the_committed_words() -> None:
    decoded = words("what is the capital of France?")
    assert shown(words_after_committed(words("what is the"), decoded)) == "capital of France"
    assert shown(words_after_committed([], decoded)) == shown(decoded)
    assert words_after_committed(words("the moon"), decoded) == [], "not found: nothing to add"
    repeated = words("yes yes and yes yes again")
    assert shown(words_after_committed(words("yes yes"), repeated)) == "again", "the last place counts"
