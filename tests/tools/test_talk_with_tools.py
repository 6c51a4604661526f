"""End to end: `kame talk` hears a spoken question with a profile that has `[[tools]]`: the back-end
process starts the real MCP server, the LLM (a wire-level fake of OpenAI's tool calls) asks for the
tool, and the log holds the call and the oracle answer built from its result."""

from __future__ import annotations

from pathlib import Path

from tests.session.conftest import (
    assert_valid_session_files,
    cpu_profile,
    interrupt,
    kame_on_card,
    session_started,
    wait_for_event,
)
from tests.support.speech import concat, synthesize
from tests.tools.fake_llm import ToolCallingLlm

HERE = Path(__file__).resolve().parent


def _answered(event: dict) -> bool:
    return (
        event["type"] == "OracleFinished"
        and event["outcome"] == "completed"
        and "two blue kettles" in event["text"]
    )


def test_talk_calls_the_tool_and_the_answer_reaches_the_oracle(tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    events_path = log_dir / "events.jsonl"
    with ToolCallingLlm() as llm:
        profile = cpu_profile(
            tmp_path / "tools.toml",
            "a fake tool-calling LLM and the test's MCP server",
            f"""
[llm]
provider = "openai"
model = "fake"
api_base = "{llm.api_base}"
[prompt]
tool_bridge = "let me check"
[[tools]]
name = "orders"
command = "python"
args = ["orders_server.py"]
cwd = "{HERE}"
allow = ["lookup_order"]
""",
        )
        # A microphone paced in real time, not a file: a file's session ends once its audio is
        # stepped, and on a busy CPU the LLM, the tool and the LLM again can take longer than any
        # pause written into it. Here the session ends once the answer was streamed.
        args = ("talk", "--profile", str(profile), "--no-ui", "--headphones", "--log-dir", str(log_dir))
        talk = kame_on_card(tmp_path / "card", *args)
        with talk as (card, process):
            wait_for_event(events_path, session_started, timeout=150)
            card.say(concat([synthesize("Where is my order please?"), 1.5]))
            wait_for_event(events_path, _answered, timeout=90)
            stdout, stderr = interrupt(process)
    assert process.returncode == 0, stderr[-2000:]
    events = assert_valid_session_files(log_dir)
    statuses = [e["message"] for e in events if e["type"] == "BackendStatus" and e["component"] == "tools"]
    assert statuses and statuses[0].startswith("orders: lookup_order ready"), statuses
    finished = [e for e in events if e["type"] == "ToolCallFinished"]
    assert finished and finished[0]["outcome"] == "ok" and finished[0]["name"] == "lookup_order"
    answered = next(e for e in events if _answered(e))
    assert answered["t"] > finished[0]["t"]
    assert "tool orders.lookup_order ok in" in stdout
