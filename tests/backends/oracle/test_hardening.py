"""The oracle back-end under hostile conditions, and the reference restart policy.

- the stream-end rule: a body that just ends (close-delimited, cut after two chunks) is not an
  answer; the same body with the server's finish reason is;
- faults are classified by LiteLLM's exception type and HTTP status before any message text;
- the reference policy: a finished answer stays current (a one-word change starts nothing), a final
  with the running request's words restarts nothing; kame's earlier variants remain as options;
- a near-zero read timeout ends as "no answer" without a "never awaited" warning, also when it
  fires while LiteLLM is still building the request in its worker thread.

The servers here are wire-level fakes: no real server cuts a body on cue.
"""

from __future__ import annotations

import contextlib
import gc
import json
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator

import pytest

from kame_cli.backends.oracle.config import PolicyConfig, PromptConfig
from kame_cli.backends.oracle.faults import classify
from kame_cli.backends.oracle.llm import import_litellm
from kame_cli.events import (
    BackendStatus,
    FinalTranscript,
    FrontendText,
    OracleClear,
    OracleFinished,
    OracleRequestStarted,
    OracleReset,
    PartialTranscript,
)
from tests.backends.oracle.harness import Recorder, openai_llm, partial, running_producer
from tests.support.llm_server import FaultyOpenAI, SilentServer


def _chunk(delta: dict[str, str], finish: str | None = None) -> bytes:
    body = {
        "id": "x",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "fake",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


@contextlib.contextmanager
def close_delimited_server(*, finished: bool) -> Iterator[str]:
    """An OpenAI-style SSE body with no length and no chunking: it ends when the socket closes.

    Two chunks, then (if `finished`) the finish reason and `[DONE]`, then the connection closes.
    """
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stopping = threading.Event()

    def serve() -> None:
        while not stopping.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                while len(body) < length:
                    body += conn.recv(65536)
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
                )
                conn.sendall(_chunk({"role": "assistant", "content": "One"}) + _chunk({"content": " two"}))
                if finished:
                    conn.sendall(_chunk({}, "stop") + b"data: [DONE]\n\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    finally:
        stopping.set()
        thread.join(timeout=5)
        listener.close()


def _finished(rec: Recorder) -> list[OracleFinished]:
    return rec.of(OracleFinished)


@pytest.mark.parametrize("finished", [False, True])
def test_a_stream_is_complete_only_with_the_servers_finish_reason(tokenizer, finished: bool) -> None:
    policy = PolicyConfig(poll_interval_s=0.05, backoff_initial_s=5.0, backoff_max_s=5.0)
    with (
        close_delimited_server(finished=finished) as api_base,
        running_producer(openai_llm("fake"), policy, tokenizer=tokenizer, api_base=api_base) as (
            producer,
            rec,
        ),
    ):
        producer.on_event(partial("count to two"))
        rec.wait(lambda r: _finished(r), timeout=15, what="the stream's end")
    [end] = _finished(rec)
    if finished:
        assert end.outcome == "completed" and end.text == "One two"
        assert [s.state for s in rec.of(BackendStatus)] == ["ok"]
        assert OracleClear(1) not in rec.commands
    else:
        assert end.outcome == "failed"
        fault = next(s for s in rec.of(BackendStatus) if s.state != "ok")
        assert fault.state == "degraded" and "cut off" in fault.message and "finish reason" in fault.message
        # What the front-end had not consumed of the half answer is withdrawn.
        assert rec.commands[0] == OracleReset(1) and rec.commands[-1] == OracleClear(1)


def _litellm_error(name: str, status: int | None = None) -> BaseException:
    import httpx

    litellm = import_litellm()
    cls = getattr(litellm, name)
    # Misleading text on purpose: the type and status decide, never these words.
    text = "connection refused, timed out, not found"
    if name in ("Timeout", "APIConnectionError"):
        return cls(message=text, llm_provider="openai", model="m")
    response = httpx.Response(status or 500, request=httpx.Request("POST", "http://x"))
    return cls(message=text, llm_provider="openai", model="m", response=response)


@pytest.mark.parametrize(
    ("name", "status", "kind"),
    [
        ("AuthenticationError", 401, "auth"),
        ("PermissionDeniedError", 403, "auth"),
        ("NotFoundError", 404, "not_found"),
        ("RateLimitError", 429, "rate_limited"),
        ("BadRequestError", 400, "bad_request"),
        ("InternalServerError", 500, "server_error"),
        ("ServiceUnavailableError", 503, "server_error"),
        ("Timeout", None, "no_answer"),
    ],
)
def test_faults_are_classified_by_type_and_status_not_text(name: str, status: int | None, kind: str) -> None:
    fault = classify(
        _litellm_error(name, status), where="m at h", key_env="K", secret=None, first_chunk_seen=False
    )
    assert fault.kind == kind, fault


def test_a_refused_connection_is_unreachable_by_its_cause_not_its_words() -> None:
    litellm = import_litellm()
    err = litellm.APIConnectionError(message="something broke", llm_provider="openai", model="m")
    err.__cause__ = ConnectionRefusedError(111, "nope")
    fault = classify(err, where="m at h", key_env=None, secret=None, first_chunk_seen=False)
    assert fault.kind == "unreachable" and "is the server running?" in fault.message


def _starts(rec: Recorder) -> list[OracleRequestStarted]:
    return rec.of(OracleRequestStarted)


def _final(text: str) -> FinalTranscript:
    return FinalTranscript(t=0.0, text=text, audio_start=0.0, audio_end=1.0)


@contextlib.contextmanager
def _answering(tokenizer, policy: PolicyConfig) -> Iterator[tuple[object, Recorder]]:
    with (
        FaultyOpenAI(["Paris", " is the capital."]) as fake,
        running_producer(openai_llm("fake"), policy, tokenizer=tokenizer, api_base=fake.api_base) as (
            producer,
            rec,
        ),
    ):
        producer.on_event(partial("what is the capital of france"))
        rec.wait(lambda r: _finished(r), timeout=15, what="the first answer")
        assert _finished(rec)[0].outcome == "completed"
        yield producer, rec


def _quiet_for(rec: Recorder, seconds: float, count: int) -> None:
    # Several polls pass (poll_interval_s = 0.05): a request would have started by then.
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert len(_starts(rec)) == count, _starts(rec)
        time.sleep(0.02)


POLL = {"poll_interval_s": 0.05}


def test_reference_policy_a_finished_answer_stays_current(tokenizer) -> None:
    with _answering(tokenizer, PolicyConfig(**POLL)) as (producer, rec):
        producer.on_event(partial("what is the capital of france please"))  # one new word
        _quiet_for(rec, 0.4, 1)
        producer.on_event(partial("what is the capital of france please tell me"))  # two more
        rec.wait(lambda r: len(_starts(r)) == 2, timeout=5, what="a request on two new words")
    assert _starts(rec)[1].reason == "first"


def test_reference_policy_a_final_with_the_same_words_restarts_nothing(tokenizer) -> None:
    with _answering(tokenizer, PolicyConfig(**POLL)) as (producer, rec):
        producer.on_event(_final("What is the capital of France?"))
        _quiet_for(rec, 0.4, 1)
        assert producer.conversation.turns[-1].text == "What is the capital of France?"
        producer.on_event(_final("and of spain"))  # a final with other words: a new request
        rec.wait(lambda r: len(_starts(r)) == 2, timeout=5, what="a request on a new final")
    assert _starts(rec)[1].reason == "final"


def test_kames_earlier_variants_stay_available_as_options(tokenizer) -> None:
    policy = PolicyConfig(**POLL, after_finish="any_change", restart_on_same_final=True)
    with _answering(tokenizer, policy) as (producer, rec):
        producer.on_event(partial("what is the capital of france please"))
        rec.wait(lambda r: len(_starts(r)) == 2, timeout=5, what="a request on one new word")
        rec.wait(lambda r: len(_finished(r)) == 2, timeout=15, what="its answer")
        producer.on_event(_final("what is the capital of france please"))
        rec.wait(lambda r: len(_starts(r)) == 3, timeout=5, what="a request on the same final")


def _pause(text: str) -> PartialTranscript:
    """The STT's partial made at the speaker's pause: every word committed."""
    return PartialTranscript(t=0.0, committed=text, tentative="", audio_end=1.0, pause=True)


def test_the_pause_partial_restarts_only_with_the_option_and_only_on_other_words(tokenizer) -> None:
    # The answered request was for "... of france"; at the pause the STT has corrected the last
    # word: no more words, so the reference rule waits for the final.
    with _answering(tokenizer, PolicyConfig(**POLL)) as (producer, rec):
        producer.on_event(_pause("what is the capital of spain"))
        _quiet_for(rec, 0.4, 1)
    with _answering(tokenizer, PolicyConfig(**POLL, restart_on_pause=True)) as (producer, rec):
        producer.on_event(_pause("What is the capital of France?"))  # the request's own words
        _quiet_for(rec, 0.4, 1)
        producer.on_event(_pause("what is the capital of spain"))
        rec.wait(lambda r: len(_starts(r)) == 2, timeout=5, what="a request on the pause partial")
        second = _starts(rec)[1]
        assert (second.reason, second.user_text) == ("pause", "what is the capital of spain")
        rec.wait(lambda r: len(_finished(r)) == 2, timeout=15, what="its answer")
        producer.on_event(_final("What is the capital of Spain?"))  # the final adds no word: kept
        _quiet_for(rec, 0.4, 2)


def _said(text: str, turn_start: float) -> PartialTranscript:
    words = text.split()
    return PartialTranscript(0.0, " ".join(words[:-1]), words[-1], turn_start + 1.0, audio_start=turn_start)


def _conversations(fake: FaultyOpenAI) -> list[str]:
    """The user message (the conversation) of each request the server got, in order."""
    requests = [body for _, path, body in fake.requests if path.endswith("/chat/completions")]
    return [body["messages"][-1]["content"] for body in requests]


@pytest.mark.parametrize("hold", [True, False])
def test_frontend_words_said_during_a_turn_join_the_prompt_at_the_next_turn(tokenizer, hold: bool) -> None:
    # With the context held, restarts within a turn and the final's request send the same lines
    # before the user's line, so a server's prompt cache rereads only that line; the front-end's
    # words said meanwhile come with the next turn. Without, each request has them, as the
    # reference sends them.
    policy, prompt = PolicyConfig(**POLL), PromptConfig(hold_context=hold)
    with (
        FaultyOpenAI(["Paris", " is the capital."]) as fake,
        running_producer(openai_llm("fake"), policy, prompt, tokenizer=tokenizer, api_base=fake.api_base) as (
            producer,
            rec,
        ),
    ):
        steps = [
            ("\u2581Hello\u2581there.", _said("what is the", 5.0)),
            ("\u2581mm\u2581hmm", _said("what is the capital of", 5.0)),  # two more words
            ("", _final("What is the capital of France?")),
            # The next turn's partials hold the lines as they are when it begins.
            ("\u2581Paris.", _said("and of spain", 9.0)),
            # A turn that never got a final (read as no speech) does not hold the next one's lines.
            ("\u2581Yes.", _said("or of italy today please", 13.0)),
        ]
        for n, (piece, user) in enumerate(steps, start=1):
            if piece:
                producer.on_event(FrontendText(0.0, n, piece))
            producer.on_event(user)
            rec.wait(lambda r, n=n: len(_finished(r)) == n, timeout=15, what=f"answer {n}")
    first, second, final, next_turn, after = _conversations(fake)
    assert "Assistant: Hello there.\nUser: what is the\n" in first
    assert ("mm hmm" in second) is not hold
    if hold:
        assert second == first.replace("User: what is the\n", "User: what is the capital of\n")
    assert ("mm hmm" in final) is not hold
    assert "User: What is the capital of France?\n" in final
    if hold:
        assert final == first.replace("User: what is the\n", "User: What is the capital of France?\n")
    said = "Assistant: Hello there. mm hmm\nUser: What is the capital of France?\nAssistant: Paris.\n"
    assert said + "User: and of spain\n" in next_turn
    assert "Assistant: Paris. Yes.\nUser: or of italy today please\n" in after


def _assert_a_silent_server_times_out_cleanly(
    tokenizer, while_open: Callable[[], None] = lambda: None
) -> None:
    """A request to a server that never answers, with a 0.5 s read timeout: it ends as a fault that
    names the timeout, and no coroutine is left never awaited. `while_open` runs once it timed out,
    before the producer stops."""
    llm = openai_llm("fake", read_timeout_s=0.5, timeout_s=2.0)
    policy = PolicyConfig(**POLL, backoff_initial_s=5.0, backoff_max_s=5.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with (
            SilentServer() as silent,
            running_producer(llm, policy, tokenizer=tokenizer, api_base=silent.url + "/v1") as (
                producer,
                rec,
            ),
        ):
            producer.on_event(partial("hello"))
            rec.wait(lambda r: _finished(r), timeout=10, what="the timeout")
            while_open()
        gc.collect()
    fault = next(s for s in rec.of(BackendStatus) if s.state != "ok")
    assert "no answer within read_timeout_s=0.5 s" in fault.message
    assert not [w for w in caught if "never awaited" in str(w.message)], [str(w.message) for w in caught]


def test_a_tiny_read_timeout_is_no_answer_without_a_never_awaited_warning(tokenizer) -> None:
    _assert_a_silent_server_times_out_cleanly(tokenizer)


def test_a_request_cancelled_while_litellm_still_builds_it_leaves_no_warning(tokenizer, monkeypatch) -> None:
    # LiteLLM builds the request in a worker thread; on a busy machine, at the producer's low
    # priority, that outlasted a 0.5 s read timeout and the dropped request warned on stderr.
    # Here the thread is held until the timeout has fired, as it was then.
    import litellm.main

    build = litellm.main.completion
    timed_out, built, held = threading.Event(), threading.Event(), []

    def slow_build(*args: object, **kwargs: object) -> object:
        held.append(timed_out.wait(timeout=10))
        try:
            return build(*args, **kwargs)
        finally:
            built.set()

    monkeypatch.setattr(litellm.main, "completion", slow_build)

    def build_after_the_timeout() -> None:
        timed_out.set()
        assert built.wait(timeout=10), "LiteLLM's request was never built"

    _assert_a_silent_server_times_out_cleanly(tokenizer, build_after_the_timeout)
    assert held == [True], "LiteLLM no longer builds its request through `litellm.main.completion`"


_FIRST_CALL = """
import asyncio, contextlib, gc, json, os, sys
import numpy  # a heap to walk, as a session's process has
from kame_cli.backends.oracle.llm import import_litellm
from tests.support.llm_server import SilentServer

full = []
gc.callbacks.append(lambda phase, info: phase == "start" and info["generation"] == 2 and full.append(1))
litellm = import_litellm()
collector = {"full_collections": len(full), "frozen": gc.get_freeze_count() > 100_000, "on": gc.isenabled()}
before = set(sys.modules)

async def first_call(url):
    with contextlib.suppress(Exception):
        await litellm.acompletion(model="openai/x", api_base=url, api_key="x", stream=True,
                                  messages=[{"role": "user", "content": "hi"}], max_retries=0, timeout=0.3)

with SilentServer() as silent:
    asyncio.run(first_call(silent.url + "/v1"))
late = sorted(m for m in set(sys.modules) - before if m.split(".")[0] == "openai")[:10]
print(json.dumps({"late": late, "dotenv": os.environ.get("KAME_DOTENV_PROBE"), **collector}))
"""


def test_litellm_loads_no_dotenv_and_its_first_request_imports_nothing_more(tmp_path) -> None:
    # LiteLLM imported the OpenAI SDK (about 450 modules) inside the first call, blocking the
    # producer's loop (no poll, no restart) for 1-3 s, 20 s at low priority on a busy machine.
    # And on import it loaded a `.env` from the current directory into the environment.
    # A fresh interpreter: in this one, earlier tests have imported it already.
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    (tmp_path / ".env").write_text("KAME_DOTENV_PROBE=loaded\nOPENAI_API_KEY=sk-from-a-dotenv\n")
    env = {k: v for k, v in os.environ.items() if k not in ("LITELLM_MODE", "KAME_DOTENV_PROBE")}
    result = subprocess.run(
        [sys.executable, "-c", _FIRST_CALL],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    # Its ~2400 models made with the collector off, then frozen: no full collection walked them.
    expected = {"late": [], "dotenv": None, "full_collections": 0, "frozen": True, "on": True}
    assert json.loads(result.stdout) == expected, result.stdout
