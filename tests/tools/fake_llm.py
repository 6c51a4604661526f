"""A wire-level fake of OpenAI's streaming chat completions with tool calls (the bundled SmolLM2
cannot call tools): asked with `tools`, it streams one call of `call_name` (its arguments split in
pieces, as real servers send them, `finish_reason: tool_calls`); asked again with the tool's result
as the last message, it streams an answer that quotes the result (or, with `always_call`, calls
again); with `tool_choice: "none"` or no tools it answers in words."""

from __future__ import annotations

import json
from typing import Any

from tests.support.llm_server import _JsonHandler, _LoopbackHttp, _openai_chunk, _sse

QUOTED = 60
"""Characters of the tool's result the answer quotes."""


class _ToolCallingHandler(_JsonHandler):
    def do_POST(self) -> None:
        owner: ToolCallingLlm = self.owner
        body = self.read_json() or {}
        owner.record("POST", self.path, body)
        messages = body.get("messages") or []
        last = messages[-1] if messages else {}
        self.start_chunked("text/event-stream")
        try:
            if last.get("role") == "tool" and not owner.always_call:
                self._words(["From the tool: ", str(last.get("content", ""))[:QUOTED]])
            elif body.get("tools") and body.get("tool_choice") != "none":
                self._call(owner.call_name, owner.call_arguments)
            else:
                self._words(["I can answer ", "without tools."])
            self.write_chunk(b"data: [DONE]\n\n")
            self.end_chunked()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _words(self, pieces: list[str]) -> None:
        for index, piece in enumerate(pieces):
            delta: dict[str, Any] = {"content": piece}
            if index == 0:
                delta["role"] = "assistant"
            self.write_chunk(_sse(_openai_chunk(delta, None)))
        self.write_chunk(_sse(_openai_chunk({}, "stop")))

    def _call(self, name: str, arguments: str) -> None:
        half = len(arguments) // 2
        first = {"index": 0, "id": "call_1", "type": "function", "function": {"name": name, "arguments": ""}}
        self.write_chunk(
            _sse(_openai_chunk({"role": "assistant", "content": None, "tool_calls": [first]}, None))
        )
        for piece in (arguments[:half], arguments[half:]):
            self.write_chunk(
                _sse(_openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}, None))
            )
        self.write_chunk(_sse(_openai_chunk({}, "tool_calls")))


class ToolCallingLlm(_LoopbackHttp):
    """The fake server; set `call_name` / `call_arguments` to choose the call it asks for."""

    handler = _ToolCallingHandler

    def __init__(self) -> None:
        super().__init__()
        self.call_name = "lookup_order"
        self.call_arguments = json.dumps({"order_id": "A17"})
        self.always_call = False
        """Ask for the tool again after its result (until `tool_choice` is "none")."""

    @property
    def api_base(self) -> str:
        return f"{self.url}/v1"

    def bodies(self) -> list[dict[str, Any]]:
        with self.lock:
            return [body for _, path, body in self.requests if path.endswith("/chat/completions")]
