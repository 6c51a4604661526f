"""The oracle's LLM calls tools: a real MCP server (stdio, the `mcp` SDK) hosted by the real
producer, an LLM on loopback that asks for the tool (a wire-level fake of OpenAI's tool-call
protocol), the tool's result reaching the oracle stream; tools that hang, fail or answer 10 MB;
a restart in the middle of a call.

One producer, and so one pair of MCP server processes, serves the whole module: each test sends a
new user partial, which starts a new request (a new generation)."""

from __future__ import annotations

import itertools
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kame_cli.backends.oracle.config import LlmConfig, PolicyConfig, PromptConfig
from kame_cli.backends.tools.config import ToolServerConfig
from kame_cli.events import (
    BackendStatus,
    OracleChunk,
    OracleFinished,
    OracleRequestStarted,
    ToolCallFinished,
    ToolCallStarted,
)
from tests.backends.oracle.harness import Recorder, of_generation, oracle_content, partial, running_producer
from tests.tools.fake_llm import ToolCallingLlm

HERE = Path(__file__).resolve().parent
BRIDGE = "let me check"
ORDER = "order A17: two blue kettles, shipped Tuesday, arrives Friday"
MAX_CHARS = 500


def _servers(events_file: Path) -> tuple[ToolServerConfig, ...]:
    # A generous start bound: two Python servers starting at once on a loaded 2-core machine.
    common: dict[str, Any] = {
        "command": "python",
        "args": ("orders_server.py",),
        "cwd": str(HERE),
        "start_timeout_s": 60.0,
    }
    return (
        ToolServerConfig(
            name="orders",
            allow=("lookup_order", "fail", "huge"),
            timeout_s=20.0,
            max_result_chars=MAX_CHARS,
            **common,
        ),
        ToolServerConfig(name="slow", allow=("hang",), timeout_s=1.5, env=("KAME_TEST_EVENTS",), **common),
    )


class Session:
    """The module's producer with its recorder, the fake LLM, and the words said so far."""

    def __init__(self, producer: Any, recorder: Recorder, llm: ToolCallingLlm, events_file: Path) -> None:
        self.producer = producer
        self.recorder = recorder
        self.llm = llm
        self.events_file = events_file
        self._words = itertools.count()
        self._said = "please check"

    def ask(self, tool: str, arguments: dict[str, Any]) -> int:
        """Make the LLM call `tool`, say something new, and return the request's generation."""
        self.llm.call_name, self.llm.call_arguments = tool, json.dumps(arguments)
        before = len(self.recorder.of(OracleRequestStarted))
        # The user goes on talking: more words restart a running request, as KAME's policy says.
        self._said += "".join(f" word{next(self._words)}" for _ in range(3))
        self.producer.on_event(partial(self._said, t=time.monotonic()))
        self.recorder.wait(
            lambda r: len(r.of(OracleRequestStarted)) > before, timeout=10.0, what="a new request"
        )
        return self.recorder.of(OracleRequestStarted)[-1].generation

    def finished(self, generation: int, timeout: float = 20.0) -> OracleFinished:
        self.recorder.wait(
            lambda r: any(e.generation == generation for e in r.of(OracleFinished)),
            timeout=timeout,
            what=f"oracle #{generation} to finish",
        )
        return next(e for e in self.recorder.of(OracleFinished) if e.generation == generation)

    def call_of(self, generation: int) -> ToolCallFinished:
        return next(e for e in self.recorder.of(ToolCallFinished) if e.generation == generation)

    def statuses(self) -> list[BackendStatus]:
        return [e for e in self.recorder.of(BackendStatus) if e.component == "tools"]


@pytest.fixture(scope="module")
def session(
    tokenizer: Any, tmp_path_factory: pytest.TempPathFactory, monkeypatch_module: Any
) -> Iterator[Session]:
    events_file = tmp_path_factory.mktemp("tools") / "server-events.txt"
    monkeypatch_module.setenv("KAME_TEST_EVENTS", str(events_file))
    with ToolCallingLlm() as llm:
        config = LlmConfig(provider="openai", model="fake", timeout_s=30.0)
        # Every new partial starts a request at once: each test is one request.
        policy = PolicyConfig(after_finish="any_change", max_restarts=1000, poll_interval_s=0.05)
        with running_producer(
            config,
            policy,
            PromptConfig(tool_bridge=BRIDGE),
            tokenizer=tokenizer,
            api_base=llm.api_base,
            tools=_servers(events_file),
        ) as (producer, recorder):
            yield Session(producer, recorder, llm, events_file)


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_both_servers_start_and_offer_only_their_allowed_tools(session: Session) -> None:
    # The producer's start() returned once both servers had said how they started, so the first
    # request already offers their tools.
    started = session.statuses()[:2]
    assert {s.message.split(":")[0] for s in started} == {"orders", "slow"}
    assert all(s.state == "ok" for s in started), started
    generation = session.ask("lookup_order", {"order_id": "A17"})
    session.finished(generation)
    offered = {tool["function"]["name"] for tool in session.llm.bodies()[-2]["tools"]}
    assert offered == {"lookup_order", "fail", "huge", "hang"}  # never `not_allowed`


def test_the_tools_result_reaches_the_oracle_stream(session: Session, tokenizer: Any) -> None:
    generation = session.ask("lookup_order", {"order_id": "A17"})
    finished = session.finished(generation)
    assert finished.outcome == "completed"
    assert finished.text == f"{BRIDGE} From the tool: {ORDER}"
    started = next(e for e in session.recorder.of(ToolCallStarted) if e.generation == generation)
    assert (started.server, started.name, json.loads(started.arguments)) == (
        "orders",
        "lookup_order",
        {"order_id": "A17"},
    )
    call = session.call_of(generation)
    assert (call.outcome, call.result_chars, call.truncated) == ("ok", len(ORDER), False)
    # The bridge went out first, then the answer built from the result, in one oracle.
    chunks = [c.text for c in session.recorder.of(OracleChunk) if c.generation == generation]
    assert chunks[0] == BRIDGE and ORDER in " ".join(chunks)
    last, tokens = oracle_content(session.recorder.commands)
    heard = tokenizer.decode(tokens).replace(" ⁇ ", "")  # the tiny tokenizer knows no digits
    assert last == generation and "two blue kettles shipped Tuesday" in heard
    # The LLM was continued with its own call and the tool's message.
    continued = session.llm.bodies()[-1]["messages"]
    assert continued[-2]["tool_calls"][0]["function"]["name"] == "lookup_order"
    assert continued[-1] == {"role": "tool", "tool_call_id": "call_1", "content": ORDER}


@pytest.mark.parametrize(
    ("tool", "arguments", "outcome", "why"),
    [
        ("hang", {"tag": "timeout"}, "timeout", "no answer within timeout_s=1.5 s"),
        ("fail", {"order_id": "B2"}, "error", "the order database is down (B2)"),
        ("huge", {}, "ok", ""),
        ("not_allowed", {}, "unavailable", "not_allowed is not an allowed tool"),
    ],
)
def test_a_tool_that_hangs_fails_or_floods_never_stops_the_oracle(
    session: Session, tool: str, arguments: dict[str, Any], outcome: str, why: str
) -> None:
    statuses = len(session.statuses())
    generation = session.ask(tool, arguments)
    finished = session.finished(generation)
    # The LLM was told and answered; the oracle carries that answer.
    assert finished.outcome == "completed" and finished.text.startswith(f"{BRIDGE} From the tool:")
    call = session.call_of(generation)
    assert call.outcome == outcome and why in call.message
    told = session.llm.bodies()[-1]["messages"][-1]["content"]
    if tool == "huge":
        assert (call.result_chars, call.truncated) == (10 * 1024 * 1024, True)
        assert len(told) < MAX_CHARS + 100
        assert session.statuses()[statuses:] == []
    else:
        assert why in told
        new = session.statuses()[statuses:]
        assert len(new) == 1 and new[0].state == "degraded" and why in new[0].message
    # The producer goes on serving: the next request's tool answers.
    later = session.ask("lookup_order", {"order_id": "A17"})
    assert session.finished(later).outcome == "completed"
    assert session.call_of(later).outcome == "ok"


def test_tool_rounds_are_bounded_then_the_llm_must_answer_in_words(session: Session) -> None:
    session.llm.always_call = True
    try:
        generation = session.ask("lookup_order", {"order_id": "A17"})
        finished = session.finished(generation)
    finally:
        session.llm.always_call = False
    calls = [e for e in session.recorder.of(ToolCallFinished) if e.generation == generation]
    assert [c.outcome for c in calls] == ["ok", "ok"]  # [llm] max_tool_rounds = 2
    assert session.llm.bodies()[-1]["tool_choice"] == "none"
    assert finished.outcome == "completed" and finished.text == f"{BRIDGE} I can answer without tools."


def test_a_restart_in_the_middle_of_a_tool_call_cancels_it(session: Session) -> None:
    generation = session.ask("hang", {"tag": "restart"})
    deadline = time.monotonic() + 10.0
    while "started restart" not in _read(session.events_file):
        assert time.monotonic() < deadline, "the MCP server never started the call"
        time.sleep(0.01)
    commands_before = len(of_generation(session.recorder.commands, generation))
    later = session.ask("lookup_order", {"order_id": "A17"})  # more words: a restart
    assert session.finished(generation).outcome == "cancelled"
    call = session.call_of(generation)
    assert call.outcome == "cancelled" and call.duration_ms < 1500
    assert session.finished(later).outcome == "completed"
    # Nothing of the cancelled request reached the oracle after the restart.
    assert len(of_generation(session.recorder.commands, generation)) == commands_before
    # The MCP server was told (notifications/cancelled) and its handler was cancelled.
    while "cancelled restart" not in _read(session.events_file):
        assert time.monotonic() < deadline, "the MCP server never saw the cancel"
        time.sleep(0.01)


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8") if path.exists() else ""


def test_a_server_that_cannot_start_is_one_status_line_and_the_oracle_goes_on(tokenizer: Any) -> None:
    broken = (
        ToolServerConfig(name="gone", allow=("x",), command=str(HERE / "no-such-program")),
        ToolServerConfig(name="refused", allow=("y",), url="http://127.0.0.1:9/mcp"),
    )
    with ToolCallingLlm() as llm:
        config = LlmConfig(provider="openai", model="fake")
        with running_producer(config, tokenizer=tokenizer, api_base=llm.api_base, tools=broken) as (
            producer,
            recorder,
        ):
            recorder.wait(
                lambda r: sum(1 for s in r.of(BackendStatus) if s.component == "tools") >= 2,
                timeout=20.0,
                what="both servers' status lines",
            )
            producer.on_event(partial("where is my order"))
            recorder.wait(lambda r: bool(r.of(OracleFinished)), timeout=20.0, what="an answer")
            statuses = [s for s in recorder.of(BackendStatus) if s.component == "tools"]
            assert {s.message.split(" ")[0] for s in statuses} == {"gone", "refused"}
            assert all(s.state == "error" and "goes on without its tools" in s.message for s in statuses)
            assert recorder.of(OracleFinished)[0].text == "I can answer without tools."
            assert "tools" not in llm.bodies()[0]


def test_python_runs_kames_own_interpreter() -> None:
    from kame_cli.backends.tools.host import program

    assert program("python") == sys.executable
    assert program("/usr/bin/env") == "/usr/bin/env"
