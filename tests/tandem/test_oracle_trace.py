"""Fed oracle tokens traced back to their request, on event sequences shaped as the engine writes them;
log lines read back as events."""

from __future__ import annotations

import json

from kame_cli.events import OracleChunk, OracleFed, OracleFinished, OracleRequestStarted, PartialTranscript
from kame_cli.session.logfile import decode_line
from kame_cli.tandem.oracle_trace import trace_generations

START = 256  # the front-end's text start token: no chunk ever carries it


def _chunk(t: float, gen: int, ids: tuple[int, ...], first: bool) -> OracleChunk:
    return OracleChunk(t, gen, "x", ids, first, 100.0)


def test_a_cancelled_answer_feeds_on_until_the_next_reset() -> None:
    events = [
        OracleRequestStarted(0.0, 1, "first", "what is"),
        _chunk(0.10, 1, (5, 6, 7), True),
        OracleFed(0.16, 10, START, 3),
        OracleFed(0.24, 11, 5, 2),
        OracleRequestStarted(0.25, 2, "words", "what is the capital"),
        OracleFinished(0.26, 1, "cancelled", "x"),
        OracleFed(0.32, 12, 6, 1),  # still generation 1: nothing reset the stream yet
        _chunk(0.35, 2, (8, 9), True),
        OracleFed(0.40, 13, START, 2),
        OracleFed(0.48, 14, 8, 1),
        OracleFed(0.56, 15, 9, 0),
    ]
    generations, start_id = trace_generations(events)
    assert start_id == START
    first, second = generations[1], generations[2]
    assert first.start_fed is not None and first.start_fed.step == 10
    assert [f.token_id for f in first.fed] == [5, 6]
    assert second.restart and not first.restart
    assert second.start_fed is not None and second.start_fed.step == 13
    assert [f.token_id for f in second.fed] == [8, 9]
    assert second.first_fed_t == 0.48


def test_two_resets_before_one_step_only_the_newest_is_fed() -> None:
    events = [
        OracleRequestStarted(0.0, 1, "first", "a"),
        OracleRequestStarted(0.01, 2, "words", "a b c"),
        _chunk(0.02, 1, (5,), True),
        _chunk(0.03, 2, (8,), True),
        OracleFed(0.08, 1, START, 1),
        OracleFed(0.16, 2, 8, 0),
    ]
    generations, _ = trace_generations(events)
    assert generations[1].start_fed is None and not generations[1].fed
    assert [f.token_id for f in generations[2].fed] == [8]


def test_a_log_written_before_a_field_was_added_reads_with_its_default() -> None:
    old = {"type": "PartialTranscript", "t": 1.0, "committed": "what is", "tentative": "the"}
    old["audio_end"] = 0.9
    assert decode_line(json.dumps(old)) == PartialTranscript(1.0, "what is", "the", 0.9, pause=False)
    # A field without a default still has to be there: such a line is left out, not half-read.
    assert decode_line(json.dumps({k: v for k, v in old.items() if k != "committed"})) is None
