"""The back-end's warm-up decode: it runs the recognizer's whole path and changes nothing after it."""

from __future__ import annotations

import dataclasses

from kame_cli.backends.stt.warmup import warm_up
from kame_cli.events import FinalTranscript, PartialTranscript
from tests.backends.stt.streams import transcribe_stream
from tests.support.speech import concat, frames


def _texts(events: list) -> list[tuple[str, str]]:
    return [
        (type(e).__name__, e.text if isinstance(e, FinalTranscript) else e.committed + "|" + e.tentative)
        for e in events
        if isinstance(e, FinalTranscript | PartialTranscript)
    ]


def test_warm_up_leaves_the_next_stream_word_for_word_the_same(stt_model, stt_config, questions) -> None:
    audio = concat([0.3, questions[0].audio, 1.5])
    before = _texts(transcribe_stream(frames(audio), stt_config, model=stt_model))
    # A 4 s window instead of the default 15 s keeps the test cheap; the path is the same.
    warm_up(stt_model, dataclasses.replace(stt_config, max_window_s=4.0))
    after = _texts(transcribe_stream(frames(audio), stt_config, model=stt_model))
    assert before == after
    assert before[-1][0] == "FinalTranscript" and "spider" in before[-1][1].lower()
