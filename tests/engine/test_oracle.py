"""KAME's oracle-stream semantics, on the stream alone and through the real-time loop."""

from __future__ import annotations

from pathlib import Path

import pytest

from kame_cli.engine.config import FrontendConfig
from kame_cli.engine.loader import Frontend, load_frontend
from kame_cli.engine.oracle import OracleStream
from kame_cli.events import OracleAppend, OracleClear, OracleFed, OracleReset
from tests.engine.streaming import stream, voice_like_frames

START, PAD = 256, 3
A, B, C = 40, 41, 42


@pytest.fixture(scope="module")
def frontend(kame_checkpoint: Path) -> Frontend:
    loaded = load_frontend(FrontendConfig(model=str(kame_checkpoint), device="cpu"))
    # Moshi's conventions: the start token is text_card (256 pieces here), padding is 3.
    assert (loaded.text_start_id, loaded.text_padding_id) == (START, PAD)
    return loaded


def _feed(stream_: OracleStream, steps: int) -> list[int]:
    return [stream_.next_token() for _ in range(steps)]


def test_stream_gives_padding_until_a_reset() -> None:
    assert _feed(OracleStream(START, PAD), 3) == [PAD, PAD, PAD]


def test_reset_then_append_feeds_start_then_tokens_then_padding() -> None:
    oracle = OracleStream(START, PAD)
    oracle.apply(OracleReset(generation=1))
    oracle.apply(OracleAppend(generation=1, token_ids=(A, B)))
    assert _feed(oracle, 5) == [START, A, B, PAD, PAD]


def test_tokens_appended_after_their_step_are_skipped_not_fed_late() -> None:
    oracle = OracleStream(START, PAD)
    oracle.apply(OracleReset(generation=1))
    assert _feed(oracle, 2) == [START, PAD]  # the token at position 1 had not arrived in time
    oracle.apply(OracleAppend(generation=1, token_ids=(A, B, C)))
    assert oracle.pending == 2
    assert _feed(oracle, 3) == [B, C, PAD]


def test_a_new_reset_restarts_the_stream_and_drops_the_old_generation() -> None:
    oracle = OracleStream(START, PAD)
    oracle.apply(OracleReset(generation=1))
    oracle.apply(OracleAppend(generation=1, token_ids=(A, A, A)))
    assert _feed(oracle, 2) == [START, A]
    oracle.apply(OracleReset(generation=2))
    oracle.apply(OracleAppend(generation=1, token_ids=(C,)))  # cancelled stream's late chunk
    oracle.apply(OracleAppend(generation=2, token_ids=(B,)))
    assert _feed(oracle, 3) == [START, B, PAD]
    assert oracle.dropped_appends == 1


def test_clear_withdraws_pending_tokens_of_its_generation_only() -> None:
    oracle = OracleStream(START, PAD)
    oracle.apply(OracleReset(generation=1))
    oracle.apply(OracleAppend(generation=1, token_ids=(A, B, C)))
    assert _feed(oracle, 2) == [START, A]
    oracle.apply(OracleClear(generation=0))  # not the current answer: ignored
    assert oracle.pending == 2
    oracle.apply(OracleClear(generation=1))
    oracle.apply(OracleAppend(generation=1, token_ids=(C,)))  # the failed stream's late chunk
    assert oracle.pending == 0
    assert _feed(oracle, 3) == [PAD, PAD, PAD]  # no start token: as if no oracle since


def test_loop_records_start_a_b_then_padding(frontend: Frontend) -> None:
    commands = {0: [OracleReset(generation=5), OracleAppend(generation=5, token_ids=(A, B))]}

    result = stream(frontend, voice_like_frames(6), at_step=commands)

    assert result.loop.fed_oracle_tokens == [START, A, B, PAD, PAD, PAD]
    fed = [(e.step, e.token_id, e.pending) for e in result.of(OracleFed)]
    assert fed == [(0, START, 2), (1, A, 1), (2, B, 0)]


def test_loop_does_not_feed_an_append_whose_step_has_passed(frontend: Frontend) -> None:
    commands = {
        1: [OracleReset(generation=1)],
        3: [OracleAppend(generation=1, token_ids=(A, B, C))],  # A was due at step 2
    }

    result = stream(frontend, voice_like_frames(7), at_step=commands)

    assert result.loop.fed_oracle_tokens == [PAD, START, PAD, B, C, PAD, PAD]


def test_different_oracles_change_generated_tokens_deterministically(frontend: Frontend) -> None:
    frames = voice_like_frames(16)
    oracle = {4: [OracleReset(generation=1), OracleAppend(generation=1, token_ids=(A, B, C, A, B, C))]}

    plain = stream(frontend, frames, seed=7, at_step={})
    plain_again = stream(frontend, frames, seed=7, at_step={})
    guided = stream(frontend, frames, seed=7, at_step=oracle)
    guided_again = stream(frontend, frames, seed=7, at_step=oracle)

    assert plain.loop.text_tokens == plain_again.loop.text_tokens
    assert guided.loop.text_tokens == guided_again.loop.text_tokens
    # Identical up to the reset step; the oracle changes what is generated from there on.
    assert guided.loop.text_tokens[:4] == plain.loop.text_tokens[:4]
    assert guided.loop.text_tokens[4:] != plain.loop.text_tokens[4:]
    guided_audio = [pcm for _, pcm in guided.outputs]
    assert any((a != b).any() for a, (_, b) in zip(guided_audio, plain.outputs, strict=True))
