"""Test plumbing for the oracle producer: a real sentencepiece tokenizer, a recorder for the
commands it sends and the events it publishes, and a replay of the front-end's oracle stream."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from kame_cli.backends.oracle.config import LlmConfig, PolicyConfig, PromptConfig
from kame_cli.backends.oracle.producer import OracleProducer
from kame_cli.backends.tools.config import ToolServerConfig
from kame_cli.bus import EventBus
from kame_cli.clock import SessionClock
from kame_cli.events import Event, OracleAppend, OracleClear, OracleCommand, OracleReset, PartialTranscript

E = TypeVar("E")


def train_tokenizer(vocab_size: int = 200) -> Any:
    """A real sentencepiece unigram model trained in memory (pad id 3, as in Moshi checkpoints)."""
    import sentencepiece as spm

    from kame_cli.engine.builtin import train_tiny_tokenizer

    return spm.SentencePieceProcessor(model_proto=train_tiny_tokenizer(vocab_size))


class Recorder:
    """What the producer sent to the front-end (in order) and published on the bus."""

    def __init__(self) -> None:
        self.bus = EventBus()
        self._sub = self.bus.subscribe("test", maxsize=0)
        self._lock = threading.Lock()
        self._sent: list[OracleCommand] = []
        self.events: list[Event] = []

    def send(self, command: OracleCommand) -> None:
        with self._lock:
            self._sent.append(command)

    @property
    def commands(self) -> list[OracleCommand]:
        with self._lock:
            return list(self._sent)

    def collect(self) -> list[Event]:
        self.events.extend(self._sub.drain())
        return self.events

    def of(self, cls: type[E]) -> list[E]:
        return [e for e in self.collect() if isinstance(e, cls)]

    def wait(self, predicate: Callable[[Recorder], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout} s waiting for {what}; events: {self.collect()}"
                )
            time.sleep(0.01)


def oracle_content(commands: Sequence[OracleCommand]) -> tuple[int | None, list[int]]:
    """The front-end's view: the generation of the last reset and the tokens appended to it
    ((None, []) once a clear withdrew that generation)."""
    generation: int | None = None
    tokens: list[int] = []
    for command in commands:
        if isinstance(command, OracleReset):
            generation, tokens = command.generation, []
        elif isinstance(command, OracleAppend) and command.generation == generation:
            tokens.extend(command.token_ids)
        elif isinstance(command, OracleClear) and command.generation == generation:
            generation, tokens = None, []
    return generation, tokens


def of_generation(commands: Sequence[OracleCommand], generation: int) -> list[OracleCommand]:
    """The commands of one generation, in the order they were sent."""
    return [c for c in commands if c.generation == generation]


def partial(text: str, t: float = 0.0) -> PartialTranscript:
    words = text.split()
    return PartialTranscript(
        t=t, committed=" ".join(words[:-1]), tentative=words[-1] if words else "", audio_end=t
    )


LONG_ANSWER = {"extra_body": {"ignore_eos": True}}
"""llama.cpp option: keep generating to max_tokens, so a stream is surely still running."""


@contextlib.contextmanager
def running_producer(
    llm: LlmConfig,
    policy: PolicyConfig | None = None,
    prompt: PromptConfig | None = None,
    *,
    tokenizer: Any,
    api_base: str | None,
    knowledge: Callable[[EventBus, SessionClock], Any] | None = None,
    tools: Sequence[ToolServerConfig] = (),
) -> Iterator[tuple[OracleProducer, Recorder]]:
    """A started producer whose commands and events a `Recorder` keeps; `knowledge` makes its
    retriever from the recorder's bus and the producer's clock."""
    recorder = Recorder()
    clock = SessionClock()
    producer = OracleProducer(
        llm,
        policy or PolicyConfig(),
        prompt or PromptConfig(),
        tokenize=tokenizer.encode,
        send=recorder.send,
        events=recorder.bus,
        clock=clock,
        api_base=api_base,
        knowledge=None if knowledge is None else knowledge(recorder.bus, clock),
        tools=tools,
    )
    producer.start()
    try:
        yield producer, recorder
    finally:
        assert producer.stop(timeout=2.0), "the producer's thread did not end within 2 s"
        count = len(recorder.commands)
        time.sleep(0.1)
        assert len(recorder.commands) == count, "commands sent after stop() returned"
