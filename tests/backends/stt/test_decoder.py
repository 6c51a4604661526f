from __future__ import annotations

import math
from dataclasses import replace

from kame_cli.backends.stt.decoder import Decoded, WindowDecoder, Word, cut_loop, drop_repeats
from kame_cli.backends.stt.text import duplicated_words, normalize_words
from tests.support.speech import concat, synthesize


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


def test_cut_loop_cuts_a_phrase_read_again_at_the_copys_first_word() -> None:
    # tiny.en's whole-turn decode of a real turn at 1.3x tempo (mfa_crossword, `--channel fast`):
    # the old rule cut one word into the second copy and the final ended "Force Liner. Montreal".
    looped = _words("Montreal Force Liner Montreal Force Liner Montreal")
    assert _text(cut_loop([], looped, reach=None)) == "Montreal Force Liner"
    assert _text(cut_loop([], _words("we went home we went"), reach=None)) == "we went home"
    for kept in (
        "i think i think we should go",
        "new york new york is great",
        "the more you eat the more you want",
    ):
        assert _text(cut_loop([], _words(kept), reach=None)) == kept


def test_drop_repeats_removes_a_pair_of_words_written_three_times() -> None:
    # The same turn's previous words, as the whole-turn decode wrote them ("Montreal, but...
    # Montreal, but... Montreal," in the final: 3 words counted twice).
    looped = _words("Montreal but Montreal but Montreal but Montreal Montreal")
    kept = drop_repeats(looped)
    assert _text(kept) == "Montreal but Montreal Montreal"
    assert duplicated_words(normalize_words("but um montreal but um but"), [w.key for w in kept]) == 0
    for said in ("thank you thank you so much", "new york new york is great", "no no no no"):
        assert _text(drop_repeats(_words(said))) == said, "two copies, or one word again, are speech"


def test_drop_repeats_removes_a_phrase_written_twice_in_a_row_but_keeps_short_repeats() -> None:
    # tiny.en's whole-turn decode of a real turn (mfa_crossword) went round a phrase once more.
    looped = _words("but um Montreal but but Montreal but but Montreal Montreal force liner")
    assert _text(drop_repeats(looped)) == "but um Montreal but but Montreal Montreal force liner"
    assert _text(drop_repeats(_words("a b c a b c a b c d"))) == "a b c d", "three copies: one kept"
    for kept in ("new york new york is great", "i think i think we should go", "the more you eat the more"):
        assert _text(drop_repeats(_words(kept))) == kept
    sentence = [Word(" at", ()), Word(" sea", ()), Word(" today", (), "."), Word(" at", ()), Word(" sea", ())]
    ended = [*sentence[:3], Word(" at", ()), Word(" sea", ()), Word(" today", (), "!")]
    assert [(w.text, w.punct) for w in drop_repeats(ended)] == [(" at", ""), (" sea", ""), (" today", "!")], (
        "the copy's closing punctuation stays"
    )
    assert drop_repeats(sentence) == sentence


def test_words_written_past_the_audio_are_dropped_but_a_last_word_at_its_end_stays(
    stt_model, stt_config
) -> None:
    decoder = WindowDecoder(stt_model, stt_config)
    said = "a wildly exciting time was his during the week preceding thursday the eighteenth"
    # The audio ends with the speech: no room for more words.
    audio = concat([0.3, synthesize(said, rate=16_000)], rate=16_000)
    heard = [w for w, _ in decoder.align_text(audio, said)]
    assert decoder.without_words_past_audio(heard) == heard
    # Whisper went on in the padding: the alignment has no audio left for these words.
    written = [w for w, _ in decoder.align_text(audio, f"{said} the last few days")]
    assert _text(decoder.without_words_past_audio(written)) == said


def _written(decoded: Decoded) -> int:
    """Tokens a decode wrote after its prefix (a punctuation mark is one token here)."""
    return sum(len(w.tokens) + bool(w.punct) for w in decoded.words) + bool(decoded.lead_punct)


def test_a_decode_writes_up_to_its_token_cap_after_a_forced_prefix(stt_model, stt_config) -> None:
    # At 2 tokens a second the cap binds on speech of ~3 tokens a second. CTranslate2 counts
    # `max_length` so that asking for `len(prompt) + cap` gave about half the cap: fast speech
    # then outran the partials, and a long committed prefix left no room for a new word.
    cfg = replace(stt_config, max_tokens_per_s=2.0)
    decoder = WindowDecoder(stt_model, cfg)
    said = "the children can swim and fish from the old pier until the sun goes down behind the hills"
    audio = concat([0.3, synthesize(said, rate=16_000), 0.3], rate=16_000)
    cap = math.ceil(2.0 * len(audio) / 16_000) + 3
    first = decoder.decode(audio)
    assert cap - 1 <= _written(first) <= cap, _text(list(first.words))
    prefix = list(first.words[:6])
    room = cap - sum(len(w.tokens) for w in prefix)
    rest = decoder.decode(audio, prefix=prefix)
    assert room - 1 <= _written(rest) <= room, _text(list(rest.words))
    # Earlier text in the prompt (a trimmed window's) changes how CTranslate2 counts: same cap.
    context = list(decoder.decode(audio, token_rate=30.0).words)
    with_context = decoder.decode(audio, prefix=prefix, context=context)
    assert room - 1 <= _written(with_context) <= room, _text(list(with_context.words))
