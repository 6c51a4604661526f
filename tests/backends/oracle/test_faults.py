"""Back-end faults become status events and a back-off; nothing of a failed stream stays in the oracle.

Real servers where they can show the fault (llama.cpp killed mid-stream, llama.cpp with an API key
for 401, a closed port); a wire-level fake where they cannot (429, 503, a cut or stalled body,
a server that accepts and never answers).
"""

from __future__ import annotations

import itertools
import time

import pytest

from kame_cli import events as ev
from kame_cli.backends.oracle.config import BUNDLED_GGUF, PolicyConfig
from kame_cli.backends.oracle.local_server import LocalLlamaServer, serving_gguf
from tests.backends.oracle.harness import (
    LONG_ANSWER,
    Recorder,
    of_generation,
    openai_llm,
    oracle_content,
    partial,
    running_producer,
)
from tests.support.llm_server import SMOLLM2_ALIAS, FaultyOpenAI, SilentServer, free_port, smollm2_server

FAST_BACKOFF = PolicyConfig(poll_interval_s=0.05, backoff_initial_s=0.2, backoff_max_s=0.8)


def _statuses(rec: Recorder) -> list[ev.BackendStatus]:
    return [e for e in rec.of(ev.BackendStatus) if e.component == "llm"]


def _failed_generations(rec: Recorder) -> set[int]:
    return {e.generation for e in rec.of(ev.OracleFinished) if e.outcome == "failed"}


def _assert_withdrawn(commands: list[ev.OracleCommand], generation: int) -> None:
    """A failed stream's commands: its reset, its appends, then one clear, and nothing of it after;
    no reset comes with the clear (that would feed a start token for an answer that never comes)."""
    own = of_generation(commands, generation)
    assert own[0] == ev.OracleReset(generation) and own[-1] == ev.OracleClear(generation), own
    assert all(isinstance(c, ev.OracleAppend) for c in own[1:-1]), own
    cleared_at = commands.index(ev.OracleClear(generation))
    after = commands[cleared_at + 1 :]
    assert not after or (isinstance(after[0], ev.OracleReset) and after[0].generation > generation), after


def _smollm2(port: int) -> LocalLlamaServer:
    server = LocalLlamaServer(serving_gguf(BUNDLED_GGUF), SMOLLM2_ALIAS, threads=1, port=port)
    server.start()
    return server


def test_server_killed_mid_stream_then_back(tokenizer) -> None:
    port = free_port()
    llm = openai_llm(max_tokens=1000, extra=LONG_ANSWER)
    servers = [_smollm2(port)]
    try:
        api_base = servers[0].api_base
        with running_producer(llm, FAST_BACKOFF, tokenizer=tokenizer, api_base=api_base) as (producer, rec):
            producer.on_event(partial("tell me a long story"))
            rec.wait(lambda r: len(r.of(ev.OracleChunk)) >= 3, timeout=30, what="the stream's first chunks")
            # On a loaded machine a first request may time out before any chunk: the stream under
            # test is the one whose chunks arrived, and only what follows the kill is checked.
            live = rec.of(ev.OracleChunk)[-1].generation
            statuses_before = len(_statuses(rec))
            starts_before = len(rec.of(ev.OracleRequestStarted))
            servers[0].kill()
            killed = time.monotonic()
            rec.wait(lambda r: live in _failed_generations(r), timeout=5, what="the stream's failure")
            rec.wait(
                lambda r: any(s.state == "error" and "unreachable" in s.message for s in _statuses(r)),
                timeout=5,
                what="the retry finding the server down",
            )
            first_fault = next(s for s in _statuses(rec)[statuses_before:] if s.state != "ok")
            assert first_fault.state == "degraded" and "cut off" in first_fault.message
            assert time.monotonic() - killed < 5
            # The half answer was withdrawn by a clear, not by a new reset.
            _assert_withdrawn(rec.commands, live)
            assert oracle_content(rec.commands) == (None, [])
            # Back-off: retries are spaced, not a busy loop.
            assert 1 <= len(rec.of(ev.OracleRequestStarted)) - starts_before <= 5

            servers.append(_smollm2(port))  # the server comes back on the same port
            rec.wait(
                lambda r: [s.state for s in _statuses(r)].count("ok") == 2 and _statuses(r)[-1].state == "ok",
                timeout=15,
                what="recovery",
            )
            rec.wait(
                lambda r: oracle_content(r.commands)[1] != [], timeout=15, what="a new answer in the oracle"
            )
            assert oracle_content(rec.commands)[0] not in _failed_generations(rec)
    finally:
        for server in servers:
            server.stop()


def test_wrong_key_401_names_the_variable_never_the_key(tokenizer, monkeypatch) -> None:
    monkeypatch.setenv("KAME_TEST_SERVER_KEY", "the-right-one")
    monkeypatch.setenv("KAME_TEST_CLIENT_KEY", "wrong-key-value-123")
    llm = openai_llm(api_key_env="KAME_TEST_CLIENT_KEY")
    with (
        smollm2_server(api_key_env="KAME_TEST_SERVER_KEY") as srv,
        running_producer(llm, FAST_BACKOFF, tokenizer=tokenizer, api_base=srv.api_base) as (producer, rec),
    ):
        producer.on_event(partial("hello there"))
        rec.wait(lambda r: len(_statuses(r)) >= 2, timeout=10, what="two failed attempts")
    statuses = _statuses(rec)
    assert all(s.state == "error" for s in statuses)
    assert "401" in statuses[0].message and "KAME_TEST_CLIENT_KEY" in statuses[0].message
    everything = " ".join(str(e) for e in rec.collect())
    assert "wrong-key-value-123" not in everything and "the-right-one" not in everything
    assert rec.commands == []


@pytest.mark.parametrize("status", [429, 503])
def test_rate_limit_and_server_error_back_off_then_recover(tokenizer, status) -> None:
    with FaultyOpenAI(pieces=["Paris", " is", " the capital."]) as fake:
        fake.mode = status
        with running_producer(openai_llm(), FAST_BACKOFF, tokenizer=tokenizer, api_base=fake.api_base) as (
            producer,
            rec,
        ):
            producer.on_event(partial("what is the capital of france"))
            rec.wait(lambda r: fake.completions() >= 4, timeout=15, what="four attempts")
            statuses = _statuses(rec)
            assert statuses and all(s.state == "degraded" and str(status) in s.message for s in statuses)
            # Each attempt waits out its back-off, doubling from 0.2 s: not a tight loop of retries.
            with fake.lock:
                calls = zip(fake.requests, fake.arrivals, strict=True)
                arrivals = [at for (_, path, _), at in calls if path.endswith("/chat/completions")][:4]
            gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
            assert all(gap >= wait - 0.02 for gap, wait in zip(gaps, (0.2, 0.4, 0.8), strict=True)), gaps
            assert rec.commands == []
            fake.mode = "ok"
            rec.wait(lambda r: _statuses(r)[-1].state == "ok", timeout=5, what="recovery")
            rec.wait(
                lambda r: bool(r.of(ev.OracleFinished)[-1].outcome == "completed"),
                timeout=5,
                what="an answer",
            )
    assert oracle_content(rec.commands)[1] == tokenizer.encode("Paris") + tokenizer.encode(
        "is"
    ) + tokenizer.encode("the capital.")


def test_connection_refused_is_an_error_and_sends_nothing(tokenizer) -> None:
    base = f"http://127.0.0.1:{free_port()}/v1"
    with running_producer(openai_llm(), FAST_BACKOFF, tokenizer=tokenizer, api_base=base) as (producer, rec):
        producer.on_event(partial("anyone there"))
        rec.wait(lambda r: len(_statuses(r)) >= 2, timeout=5, what="two failed attempts")
    statuses = _statuses(rec)
    assert statuses[0].state == "error" and "unreachable" in statuses[0].message
    assert rec.commands == []
    assert all(e.outcome == "failed" for e in rec.of(ev.OracleFinished))


def test_server_that_accepts_and_never_answers(tokenizer) -> None:
    llm = openai_llm(read_timeout_s=0.4, timeout_s=1.0)
    with SilentServer() as silent:
        with running_producer(llm, FAST_BACKOFF, tokenizer=tokenizer, api_base=f"{silent.url}/v1") as (
            producer,
            rec,
        ):
            began = time.monotonic()
            producer.on_event(partial("hello"))
            rec.wait(lambda r: bool(_statuses(r)), timeout=5, what="the no-answer status")
            assert time.monotonic() - began < 3.0
            status = _statuses(rec)[0]
            assert status.state == "degraded" and "no answer" in status.message
            # A request is hanging again now; stop() must still return promptly (checked on exit).
            rec.wait(lambda r: silent.accepted >= 2, timeout=5, what="the retry")
        deadline = time.monotonic() + 2.0
        while silent.closed_by_client < silent.accepted:
            assert time.monotonic() < deadline, "a hanging request's connection was left open"
            time.sleep(0.02)
    assert rec.commands == []


@pytest.mark.parametrize("mode", ["drop", "stall"])
def test_stream_cut_or_stalled_after_chunks_is_withdrawn(tokenizer, mode) -> None:
    llm = openai_llm(read_timeout_s=0.4, timeout_s=5.0)
    with FaultyOpenAI(pieces=["One", " two", " three", " four"]) as fake:
        fake.mode = mode
        fake.drop_after = 3
        fake.chunk_delay_s = 0.05
        with running_producer(llm, FAST_BACKOFF, tokenizer=tokenizer, api_base=fake.api_base) as (
            producer,
            rec,
        ):
            producer.on_event(partial("count with me"))
            rec.wait(lambda r: 1 in _failed_generations(r), timeout=5, what="the failure")
            rec.wait(lambda r: bool(_statuses(r)), timeout=5, what="the status")
            fake.mode = "drop"
            fake.drop_after = 0  # keep failing until the test ends
        chunks = [c for c in rec.of(ev.OracleChunk) if c.generation == 1]
    assert [c.text for c in chunks] == (
        ["One", "two", "three"] if mode == "drop" else ["One", "two", "three", "four"]
    )
    status = next(s for s in _statuses(rec) if s.state != "ok")
    assert status.state == "degraded"
    assert ("cut off" if mode == "drop" else "stalled") in status.message
    _assert_withdrawn(rec.commands, 1)
    assert [c for c in rec.commands if isinstance(c, ev.OracleAppend) and c.generation == 1]
    generation, tokens = oracle_content(rec.commands)
    assert generation not in _failed_generations(rec) and tokens == []
