"""What the LLM receives, captured at the wire: the real producer, the real LiteLLM, a real index,
and an OpenAI-compatible endpoint on loopback that records each request's body."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from kame_cli.backends.oracle.config import LlmConfig, PolicyConfig
from kame_cli.backends.oracle.prompt import NOTES_HEADING
from kame_cli.bus import EventBus
from kame_cli.clock import SessionClock
from kame_cli.events import FinalTranscript, OracleFinished, Retrieval
from kame_cli.knowledge.config import KnowledgeConfig
from kame_cli.knowledge.index import KnowledgeIndex
from kame_cli.knowledge.retriever import Retriever
from tests.backends.oracle.harness import Recorder, partial, running_producer, train_tokenizer
from tests.support.llm_server import FaultyOpenAI

RETURNS = (
    "[source: handbook.md > Acme handbook > Returns] A customer may return a kettle within 45 days of "
    "delivery, with the receipt, for a full refund."
)


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return train_tokenizer()


def retriever_of(
    config: KnowledgeConfig, index: KnowledgeIndex
) -> Callable[[EventBus, SessionClock], Retriever]:
    return lambda bus, clock: Retriever(config, index, events=bus, clock=clock)


def _user_message(body: dict[str, Any]) -> str:
    return str(body["messages"][-1]["content"])


def _ask(
    knowledge: Callable[[EventBus, SessionClock], Retriever], said: str, tokenizer: Any
) -> tuple[dict[str, Any], str, Recorder]:
    """One request for `said` through a producer with `knowledge`: its body and path as the
    endpoint received them, and what the producer published."""
    with FaultyOpenAI(pieces=["Let me see."]) as server:
        llm = LlmConfig(provider="openai", model="fake", api_base=server.api_base, max_tokens=8)
        with running_producer(llm, tokenizer=tokenizer, api_base=server.api_base, knowledge=knowledge) as (
            producer,
            recorder,
        ):
            producer.on_event(partial(said))
            recorder.wait(lambda r: bool(r.of(OracleFinished)), 10.0, "the answer")
        ((_, path, body),) = server.requests
    return body, path, recorder


def test_the_request_holds_the_one_passage_that_answers_and_its_source(
    indexed: tuple[KnowledgeConfig, KnowledgeIndex], tokenizer: Any
) -> None:
    config, index = indexed
    said = "how many days do I have to return the kettle"
    body, path, recorder = _ask(retriever_of(config, index), said, tokenizer)
    assert path == "/v1/chat/completions"
    user = _user_message(body)
    notes = user[: user.index("\n\nConversation so far")]
    assert notes.startswith(NOTES_HEADING)
    assert notes.splitlines()[1] == RETURNS  # the answer's passage first, with its source
    (retrieval,) = recorder.of(Retrieval)
    assert retrieval.generation == 1 and retrieval.outcome == "ok"
    assert retrieval.sources[0] == "handbook.md > Acme handbook > Returns"
    assert retrieval.query == said
    assert retrieval.chars == len(notes) and retrieval.duration_ms > 0


def test_a_restart_on_the_same_words_sends_the_same_prompt(
    indexed: tuple[KnowledgeConfig, KnowledgeIndex], tokenizer: Any
) -> None:
    config, index = indexed
    # The user's final repeats the partial's words: a restart, with the same words.
    policy = PolicyConfig(restart_on_same_final=True, poll_interval_s=0.05)
    with FaultyOpenAI(pieces=["Sure."]) as server:
        llm = LlmConfig(provider="openai", model="fake", api_base=server.api_base, max_tokens=8)
        with running_producer(
            llm, policy, tokenizer=tokenizer, api_base=server.api_base, knowledge=retriever_of(config, index)
        ) as (producer, recorder):
            said = "what warranty does the toaster have"
            producer.on_event(partial(said))
            recorder.wait(lambda r: bool(r.of(OracleFinished)), 10.0, "the first answer")
            producer.on_event(FinalTranscript(t=1.0, text=said, audio_start=0.0, audio_end=1.0))
            recorder.wait(lambda r: len(r.of(OracleFinished)) == 2, 10.0, "the restart's answer")
        bodies = [body for _, _, body in server.requests]
    assert len(bodies) == 2
    assert bodies[0]["messages"] == bodies[1]["messages"]
    assert "[source: warranty.html > Warranty]" in _user_message(bodies[0])


def test_a_late_index_or_embedding_call_never_holds_the_request(
    indexed: tuple[KnowledgeConfig, KnowledgeIndex], tokenizer: Any
) -> None:
    config, index = indexed
    slow = dataclasses.replace(config, timeout_ms=1.0)

    class SlowIndex(KnowledgeIndex):
        def search(self, match: str, limit: int) -> Any:
            import time

            time.sleep(0.2)
            return super().search(match, limit)

    late = SlowIndex(index.path)
    body, _, recorder = _ask(retriever_of(slow, late), "how long is the toaster warranty", tokenizer)
    (retrieval,) = recorder.of(Retrieval)
    assert retrieval.outcome == "timeout" and retrieval.sources == () and retrieval.chars == 0
    assert retrieval.duration_ms < 150
    assert "Reference notes" not in _user_message(body)
