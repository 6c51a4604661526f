"""The oracle producer against a real LLM server on loopback (xllamacpp + SmolLM2-135M) via LiteLLM."""

from __future__ import annotations

import time

from kame_cli.backends.oracle.config import PolicyConfig
from kame_cli.events import (
    BackendStatus,
    FinalTranscript,
    OracleAppend,
    OracleChunk,
    OracleFinished,
    OracleRequestStarted,
    OracleReset,
)
from tests.backends.oracle.harness import (
    LONG_ANSWER,
    Recorder,
    openai_llm,
    oracle_content,
    partial,
    running_producer,
)
from tests.support.llm_server import slot_busy


def _finished(rec: Recorder, generation: int) -> bool:
    return any(e.generation == generation for e in rec.of(OracleFinished))


def test_partial_yields_reset_then_appends_of_the_tokenized_chunks(smollm2, tokenizer) -> None:
    with running_producer(openai_llm(), tokenizer=tokenizer, api_base=smollm2.api_base) as (producer, rec):
        producer.on_event(partial("what is the capital of france"))
        rec.wait(lambda r: _finished(r, 1), timeout=30, what="the first answer")

    [started] = rec.of(OracleRequestStarted)
    assert (started.generation, started.reason, started.user_text) == (
        1,
        "first",
        "what is the capital of france",
    )
    [finished] = rec.of(OracleFinished)
    assert finished.outcome == "completed" and finished.text
    chunks = rec.of(OracleChunk)
    assert chunks and [c.first for c in chunks] == [True] + [False] * (len(chunks) - 1)
    # Each chunk is stripped, then encoded with the front-end's tokenizer, in arrival order.
    for chunk in chunks:
        assert chunk.text == chunk.text.strip() and chunk.text
        assert chunk.token_ids == tuple(tokenizer.encode(chunk.text))
    commands = rec.commands
    assert commands[0] == OracleReset(1)
    appends = commands[1:]
    assert all(isinstance(c, OracleAppend) and c.generation == 1 for c in appends)
    assert [c.token_ids for c in appends] == [c.token_ids for c in chunks if c.token_ids]
    assert oracle_content(commands) == (1, [t for c in chunks for t in c.token_ids])
    assert "".join(c.text for c in chunks) == "".join(finished.text.split())
    assert [e.state for e in rec.of(BackendStatus)] == ["ok"]


def test_growing_partials_restart_on_new_words_and_on_final(smollm2, tokenizer) -> None:
    # kame's earlier variant: a final restarts even when its words are the running request's.
    policy = PolicyConfig(poll_interval_s=0.1, min_new_words=2, restart_on_same_final=True)
    llm = openai_llm(max_tokens=400, extra=LONG_ANSWER)
    with running_producer(llm, policy, tokenizer=tokenizer, api_base=smollm2.api_base) as (producer, rec):
        producer.on_event(partial("tell me"))
        rec.wait(lambda r: len(r.of(OracleRequestStarted)) == 1, timeout=5, what="the first start")
        producer.on_event(partial("tell me about"))  # one word more: below min_new_words
        time.sleep(0.5)
        assert len(rec.of(OracleRequestStarted)) == 1
        producer.on_event(partial("tell me about the moon"))  # three more than at the start
        rec.wait(lambda r: len(r.of(OracleRequestStarted)) == 2, timeout=5, what="a restart on words")
        producer.on_event(
            FinalTranscript(t=0.0, text="tell me about the moon", audio_start=0.0, audio_end=2.0)
        )
        rec.wait(lambda r: len(r.of(OracleRequestStarted)) == 3, timeout=5, what="a restart on the final")
        rec.wait(lambda r: _finished(r, 2), timeout=5, what="the cancelled stream's end")

    starts = rec.of(OracleRequestStarted)
    assert [(s.generation, s.reason) for s in starts] == [(1, "first"), (2, "words"), (3, "final")]
    assert [s.user_text for s in starts] == ["tell me", "tell me about the moon", "tell me about the moon"]
    outcomes = {e.generation: e.outcome for e in rec.of(OracleFinished)}
    assert outcomes[1] == "cancelled" and outcomes[2] == "cancelled"


def test_restart_cap_holds_under_a_burst_of_twenty_partials(smollm2, tokenizer) -> None:
    policy = PolicyConfig(poll_interval_s=0.02, min_new_words=1, max_restarts=3, restart_window_s=2.0)
    llm = openai_llm(max_tokens=400, extra=LONG_ANSWER)
    words = [f"word{i}" for i in range(1, 21)]
    with running_producer(llm, policy, tokenizer=tokenizer, api_base=smollm2.api_base) as (producer, rec):
        began = time.monotonic()
        for count in range(1, 21):  # 20 partials in 1 s, each one word longer
            producer.on_event(partial(" ".join(words[:count])))
            time.sleep(0.05)
        assert time.monotonic() - began < 1.5
        in_burst = len(rec.of(OracleRequestStarted))
        time.sleep(max(0.0, began + 2.6 - time.monotonic()))
        starts = rec.of(OracleRequestStarted)

    assert in_burst == 3, "without the cap every poll during the burst would restart"
    # Once the window has passed, the pending words get their restart.
    assert len(starts) == 4 and starts[-1].user_text == " ".join(words)
    times = [s.t for s in starts]
    for i, first in enumerate(times):
        assert sum(1 for t in times[i:] if t < first + policy.restart_window_s) <= policy.max_restarts


def test_a_cancelled_stream_is_closed_and_never_forwarded(smollm2, tokenizer) -> None:
    policy = PolicyConfig(poll_interval_s=0.05)
    llm = openai_llm(max_tokens=1000, extra=LONG_ANSWER)
    with running_producer(llm, policy, tokenizer=tokenizer, api_base=smollm2.api_base) as (producer, rec):
        producer.on_event(partial("count from one"))
        rec.wait(lambda r: len(r.of(OracleChunk)) >= 3, timeout=30, what="the first stream's chunks")
        producer.on_event(partial("count from one to ten please"))
        rec.wait(lambda r: len(r.of(OracleRequestStarted)) == 2, timeout=5, what="the restart")
        rec.wait(
            lambda r: any(c.generation == 2 for c in r.of(OracleChunk)), timeout=30, what="the new answer"
        )
        time.sleep(0.3)
        assert slot_busy(smollm2.url)  # the second answer (1000 tokens) is still being generated

    # Order, not time: once generation 2's reset went out, nothing of generation 1 may follow it,
    # up to and including stop().
    commands = rec.commands
    restart_at = commands.index(OracleReset(2))
    assert [c for c in commands[:restart_at] if c.generation != 1] == []
    assert any(isinstance(c, OracleAppend) for c in commands[:restart_at]), "gen 1 was streaming"
    late = [c for c in commands[restart_at:] if c.generation == 1]
    assert not late, f"the cancelled stream reached the oracle after its cancellation: {late}"
    assert oracle_content(commands)[0] == 2

    # stop() cancelled it: llama.cpp sees the connection close and frees its slot at once,
    # although 1000 tokens at ~80 tok/s would keep it busy for many seconds more.
    deadline = time.monotonic() + 3.0
    while slot_busy(smollm2.url):
        assert time.monotonic() < deadline, "llama.cpp still generating: the HTTP request was not closed"
        time.sleep(0.05)
    outcomes = {e.generation: e.outcome for e in rec.of(OracleFinished)}
    assert outcomes == {1: "cancelled", 2: "cancelled"}


def _starts_after_a_final(smollm2, tokenizer, *, at_once: bool) -> list[str]:
    """The request reasons after a final (new words) came while a long answer streamed.

    The poll runs every 30 s, so before it only the check at arrival can restart.
    """
    policy = PolicyConfig(poll_interval_s=30.0, restart_at_once=at_once)
    llm = openai_llm(max_tokens=1000, extra=LONG_ANSWER)
    with running_producer(llm, policy, tokenizer=tokenizer, api_base=smollm2.api_base) as (producer, rec):
        producer.on_event(partial("tell me"))
        rec.wait(lambda r: bool(r.of(OracleChunk)), timeout=10, what="the first answer streaming")
        producer.on_event(FinalTranscript(t=0.0, text="tell me a story", audio_start=0.0, audio_end=2.0))
        if at_once:
            rec.wait(lambda r: len(r.of(OracleRequestStarted)) == 2, timeout=10, what="the restart")
        else:
            time.sleep(2.0)  # the span in which a restart must not come, not a wait for one
        return [s.reason for s in rec.of(OracleRequestStarted)]


def test_a_final_restarts_at_once_or_with_the_reference_at_the_poll(smollm2, tokenizer) -> None:
    # kame's default: the restart rule is checked as the final arrives.
    assert _starts_after_a_final(smollm2, tokenizer, at_once=True) == ["first", "final"]
    # The reference's pure polling: the final waits for the next poll.
    assert _starts_after_a_final(smollm2, tokenizer, at_once=False) == ["first"]
