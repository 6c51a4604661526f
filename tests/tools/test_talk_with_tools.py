"""End to end: `kame talk` on a spoken question with a profile that has `[[tools]]`: the back-end
process starts the real MCP server, the LLM (a wire-level fake of OpenAI's tool calls) asks for the
tool, and the log holds the call and the oracle answer built from its result."""

from __future__ import annotations

from pathlib import Path

from tests.session.conftest import assert_valid_session_files, cpu_profile, run_kame
from tests.support.speech import speak
from tests.tools.fake_llm import ToolCallingLlm

HERE = Path(__file__).resolve().parent


def test_talk_calls_the_tool_and_the_answer_reaches_the_oracle(tmp_path: Path) -> None:
    wav = speak("Where is my order please?", tmp_path / "question.wav")
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
        log_dir = tmp_path / "log"
        done = run_kame(
            "talk", "--profile", str(profile), "--input", str(wav), "--fast", "--no-ui",
            "--log-dir", str(log_dir), "--output", str(tmp_path / "out.wav"),
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    events = assert_valid_session_files(log_dir, tmp_path / "out.wav")
    statuses = [e["message"] for e in events if e["type"] == "BackendStatus" and e["component"] == "tools"]
    assert statuses and statuses[0].startswith("orders: lookup_order ready"), statuses
    finished = [e for e in events if e["type"] == "ToolCallFinished"]
    assert finished and finished[0]["outcome"] == "ok" and finished[0]["name"] == "lookup_order"
    answers = [e["text"] for e in events if e["type"] == "OracleFinished" and e["outcome"] == "completed"]
    assert any("two blue kettles" in text for text in answers), answers
    assert "tool orders.lookup_order ok in" in done.stdout
