"""The commit step and whole-turn finals, on real tiny.en and espeak-ng speech."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from kame_cli.backends.stt.decoder import WindowDecoder, Word
from kame_cli.backends.stt.recognizer import StreamingRecognizer
from kame_cli.backends.stt.text import NUMBER_WORDS, duplicated_words, normalize_words, word_error_rate
from kame_cli.events import FinalTranscript, PartialTranscript
from tests.support.speech import concat, synthesize

PARAGRAPH = (
    "I would like to plan a long trip to the mountains next summer with my whole family because we "
    "want to hike every single day and sleep in small wooden cabins near a quiet lake where the water "
    "is cold and clear and the children can swim and fish from the old pier until the sun goes down"
)
"""57 words in one breath: one turn of fluent speech, long enough for the window to be trimmed."""
REREAD = "A wildly exciting time was his during the week preceding Thursday the eighteenth."
"""At 185 words a minute, tiny.en decoding this turn's window wrote its start again at the end."""
NUMBERS = "The ticket cost one hundred and forty four dollars and the train left at twenty five past six."


def _run(recognizer: StreamingRecognizer, audio16: np.ndarray, step: int = 4000) -> list:
    """The audio in `step`-sample chunks (0.25 s, the default `step_s`), a decode after each."""
    events: list = []
    for start in range(0, len(audio16), step):
        recognizer.insert_audio(audio16[start : start + step])
        events += recognizer.process_iter()
    return events + recognizer.finish()


def _speech(text: str, speed: int = 150) -> np.ndarray:
    return concat([0.5, synthesize(text, rate=16_000, speed=speed), 1.5], rate=16_000)


@pytest.fixture(scope="module")
def runs(stt_model, stt_config) -> dict[str, tuple[np.ndarray, list]]:
    """Each turn through one recognizer (16 kHz in 0.25 s steps, as the worker feeds it)."""
    out = {}
    for name, text, speed in (
        ("paragraph", PARAGRAPH, 150),
        ("reread", REREAD, 185),
        ("numbers", NUMBERS, 150),
    ):
        audio = _speech(text, speed)
        out[name] = (audio, _run(StreamingRecognizer(stt_model, stt_config), audio))
    return out


def _partials(events: list) -> list[PartialTranscript]:
    return [e for e in events if isinstance(e, PartialTranscript)]


def _finals(events: list) -> list[FinalTranscript]:
    return [e for e in events if isinstance(e, FinalTranscript)]


@pytest.mark.parametrize(("name", "text"), [("paragraph", PARAGRAPH), ("reread", REREAD)])
def test_no_passage_is_written_twice(runs, name, text) -> None:
    _, events = runs[name]
    reference = normalize_words(text)
    finals = _finals(events)
    assert len(finals) == 1, [f.text for f in finals]
    final = normalize_words(finals[0].text)
    committed = normalize_words(_partials(events)[-1].committed)
    assert duplicated_words(reference, final) == 0, finals[0].text
    assert duplicated_words(reference, committed) == 0, committed
    # Read again, the start would come back at the end ("...Thursday the 1980s, the wildly").
    assert len(final) <= len(reference) + 2, finals[0].text
    if name == "paragraph":
        assert word_error_rate([text], [finals[0].text]) <= 0.2, finals[0].text
        assert len(reference) >= 40 and len(committed) >= 20, "most words are committed before the end"


def test_committed_text_never_changes(runs) -> None:
    for _, events in runs.values():
        parts = _partials(events)
        for earlier, later in itertools.pairwise(parts):
            assert later.committed.startswith(earlier.committed), (earlier.committed, later.committed)


def test_a_number_spoken_in_words_stays_one_commit(runs) -> None:
    _, events = runs["numbers"]
    commits = []
    for earlier, later in itertools.pairwise([PartialTranscript(0, "", "", 0), *_partials(events)]):
        added = normalize_words(later.committed)[len(normalize_words(earlier.committed)) :]
        if added:
            commits.append(added)
    assert len(commits) >= 3, commits
    for before, after in itertools.pairwise(commits):
        # A commit that ends in a number word is never followed by one that goes on with it.
        assert not (before[-1] in NUMBER_WORDS and after[0] in NUMBER_WORDS | {"and"}), commits
    heard = normalize_words(_finals(events)[0].text)
    assert "forty" in heard and "four" in heard, heard


def test_the_whole_turn_final_replaces_the_partials(runs, stt_model, stt_config) -> None:
    for name in ("paragraph", "numbers"):
        final = _finals(runs[name][1])[0]
        last = _partials(runs[name][1])[-1]
        assert final.partial_text == last.text
        committed = normalize_words(last.committed)
        assert final.revised == (normalize_words(final.text)[: len(committed)] != committed)
    # The final is the turn decoded at once, as offline: the same text as one decode of its audio
    # (speech onset to speech end, each widened by the 300 ms pad; a turn under 10 s is one piece).
    audio, events = runs["numbers"]
    final = _finals(events)[0]
    start = round((final.audio_start - 0.3) * 16_000)
    end = round((final.audio_end + 0.3) * 16_000)
    assert (end - start) / 16_000 < 10
    offline = WindowDecoder(stt_model, stt_config).decode(
        audio[start:end], token_rate=2 * stt_config.max_tokens_per_s
    )
    assert final.text == offline.text_after(())


def test_rereads_are_dropped_from_a_hypothesis(stt_model, stt_config) -> None:
    """The clean-up of a decode's new words, on words the real tokenizer makes."""
    decoder = WindowDecoder(stt_model, stt_config)
    recognizer = StreamingRecognizer(stt_model, stt_config)

    def words(text: str) -> list[Word]:
        return decoder.split_words(stt_model.tokenizer.encode(" " + text))[1]

    def clean(committed: str, new: str) -> str:
        from kame_cli.backends.stt.recognizer import _Turn

        turn = _Turn(start=0, onset=0, window_start=0)
        turn.committed = turn.window_committed = words(committed)
        return " ".join(w.text.strip() for w in recognizer._without_rereads(turn, words(new)))

    assert clean("the train should go", "should go to London") == "to London"
    assert clean("the train should depart from Cambridge", "and the train should depart") == "and"
    assert clean("a wildly exciting time", "was his during the week") == "was his during the week"
    assert clean("the more you eat", "the more") == "the more", "two words again are no re-read"
    said_twice = "the invention of the art of printing"
    assert clean("the invention of movable letters is seen as", said_twice) == said_twice, (
        "a phrase said twice, then other words, is no re-read"
    )
    assert clean("at sea Monday March 16 1908", "at sea Monday March") == "", "a re-read to the end"
    assert clean("the train should depart from Cambridge", "and the train should depart from Leeds") == (
        "and"
    ), "five words read again are a re-read though others follow"


def test_agreement_reads_numbers_by_value_and_holds_only_numbers_that_may_go_on(
    stt_model, stt_config
) -> None:
    """What two consecutive hypotheses let the recognizer commit, on words the real tokenizer makes."""
    from kame_cli.backends.stt.recognizer import _common_prefix, _outside_number

    decoder = WindowDecoder(stt_model, stt_config)

    def words(text: str) -> list[Word]:
        return decoder.split_words(stt_model.tokenizer.encode(" " + text))[1]

    def agreed(previous: str, latest: str) -> str:
        new = words(latest)
        n = _outside_number(new, _common_prefix(words(previous), new))
        return " ".join(w.text.strip() for w in new[:n])

    assert agreed("Two days ago", "2 days ago Gene") == "2 days ago", "one number, two spellings"
    assert agreed("Out of his 1800", "Out of his 1800 he later") == "Out of his 1800", "followed: whole"
    assert agreed("it cost twenty", "it cost twenty five dollars") == "it cost", "five may go on with it"
    assert agreed("it cost 100", "it cost 100 and 40") == "it cost", "and may go on with it"
    assert agreed("March 16", "March 16 19") == "March", "a number after a number may join it"
    assert agreed("it cost 100 dollars", "it cost 100 dollars and") == "it cost 100 dollars"
