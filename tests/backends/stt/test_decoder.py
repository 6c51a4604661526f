from __future__ import annotations

from kame_cli.backends.stt.decoder import WindowDecoder, Word, cut_loop


def _words(text: str) -> list[Word]:
    return [Word(" " + w, ()) for w in text.split()]


def _text(words: list[Word]) -> str:
    return " ".join(w.text.strip() for w in words)


def test_split_words_keeps_trailing_punctuation_apart(stt_model, stt_config) -> None:
    decoder = WindowDecoder(stt_model, stt_config)
    tokens = stt_model.tokenizer.encode("? Is the U.S. capital big, or isn't it...")
    lead, words = decoder.split_words(tokens)
    assert lead == "?"
    assert [w.text for w in words] == [" Is", " the", " U.S", " capital", " big", " or", " isn't", " it"]
    assert [w.punct for w in words] == ["", "", ".", "", ",", "", "", "..."]
    # What would be forced as a decoder prefix: the words without their trailing punctuation.
    assert (
        stt_model.tokenizer.decode([t for w in words for t in w.tokens])
        == " Is the U.S capital big or isn't it"
    )
    assert words[6].key == "isn't"


def test_cut_loop_cuts_rereadings_but_keeps_real_repetition() -> None:
    assert _text(cut_loop([], _words("produced the book produced the"))) == "produced the book"
    assert _text(cut_loop(_words("produced the block books"), _words("produced the block"))) == ""
    assert _text(cut_loop(_words("an example of fine typography"), _words("an example of fine typ"))) == ""
    assert _text(cut_loop([], _words("then in the same operation then"))) == "then in the same operation"
    assert _text(cut_loop([], _words("no no no no"))) == "no no"
    kept = "the more you eat the more you want"
    assert _text(cut_loop([], _words(kept))) == kept
    chiasmus = "ask not what your country can do for you ask what you can do for your country"
    assert _text(cut_loop([], _words(chiasmus))) == chiasmus


def test_cut_loop_without_reach_cuts_a_turn_read_twice() -> None:
    sentence = "it happened to him at the galena society in oakland one afternoon"
    twice = _words(f"{sentence} {sentence}")
    assert _text(cut_loop([], twice)) == f"{sentence} {sentence}", "8 words back: too far to see"
    assert _text(cut_loop([], twice, reach=None)) == sentence
    assert _text(cut_loop([], _words(f"{sentence} it happened to"), reach=None)) == sentence
    kept = "the more you eat the more you want"
    assert _text(cut_loop([], _words(kept), reach=None)) == kept


def test_cut_loop_cuts_a_sentence_read_over_and_over() -> None:
    sentence = "they only lifted 750"
    assert _text(cut_loop([], _words(" ".join([sentence] * 4)), reach=None)) == sentence
    # Short phrases looped three times or more, as tiny.en read two real turns (mfa_surround, mfa_crossword).
    looped = "very bad aligner very bad aligner very bad aligner very bad"
    assert _text(cut_loop([], _words(looped), reach=None)) == "very bad aligner"
    assert _text(cut_loop([], _words(" ".join(["montreal but but"] * 8)), reach=None)) == "montreal but but"
    assert _text(cut_loop([], _words("so far so far so far so f"))) == "so far"
    for kept in ("i think i think we should go", "very very good", "new york new york is great"):
        assert _text(cut_loop([], _words(kept), reach=None)) == kept
    chiasmus = "ask not what your country can do for you ask what you can do for your country"
    assert _text(cut_loop([], _words(chiasmus), reach=None)) == chiasmus
