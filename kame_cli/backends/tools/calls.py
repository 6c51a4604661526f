"""OpenAI-style tool calling as LiteLLM streams it: the call's pieces gathered from the deltas, and
the two messages that continue the conversation with a tool's result."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

ARGUMENTS_SHOWN = 300
"""Characters of a call's arguments kept in events (the log and the panel): the LLM writes them, so
their size is not ours to trust."""


@dataclass(frozen=True, slots=True)
class ToolCallRequest:
    """One tool call the LLM asked for: its id (to answer it), the tool's name, the arguments as
    the JSON text the LLM wrote."""

    call_id: str
    name: str
    arguments: str

    def shown_arguments(self) -> str:
        """The arguments, bounded for events."""
        text = self.arguments
        return text if len(text) <= ARGUMENTS_SHOWN else text[: ARGUMENTS_SHOWN - 3] + "..."


@dataclass
class _Partial:
    call_id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class ToolCallDeltas:
    """Gathers the streamed pieces of the tool calls in one answer: each delta names its call by
    `index`; the id and name come once, the arguments in pieces."""

    def __init__(self) -> None:
        self._calls: dict[int, _Partial] = {}

    def add(self, deltas: Any) -> None:
        """Take one chunk's `delta.tool_calls` (objects or dicts, as LiteLLM hands them)."""
        for position, delta in enumerate(deltas or ()):
            index = _get(delta, "index")
            call = self._calls.setdefault(index if isinstance(index, int) else position, _Partial())
            call_id = _get(delta, "id")
            if isinstance(call_id, str) and call_id:
                call.call_id = call_id
            function = _get(delta, "function")
            name = _get(function, "name")
            if isinstance(name, str) and name:
                call.name = name
            arguments = _get(function, "arguments")
            if isinstance(arguments, str):
                call.arguments.append(arguments)

    def requests(self) -> list[ToolCallRequest]:
        """The complete calls, in the LLM's order (a call without a name is no call)."""
        found = []
        for index in sorted(self._calls):
            call = self._calls[index]
            if call.name:
                found.append(
                    ToolCallRequest(call.call_id or f"call_{index}", call.name, "".join(call.arguments))
                )
        return found


def _get(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


def assistant_message(text: str, calls: list[ToolCallRequest]) -> dict[str, Any]:
    """The assistant's turn that asked for `calls` (with any words it said first)."""
    return {
        "role": "assistant",
        "content": text or None,
        "tool_calls": [
            {
                "id": call.call_id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments or "{}"},
            }
            for call in calls
        ],
    }


def tool_message(call: ToolCallRequest, content: str) -> dict[str, Any]:
    """The tool's answer to one call."""
    return {"role": "tool", "tool_call_id": call.call_id, "content": content}


def parse_arguments(text: str) -> dict[str, Any]:
    """The call's arguments as a JSON object (empty text: none); ValueError saying what is wrong."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"the LLM's arguments are not JSON ({err.msg})") from None
    if not isinstance(value, dict):
        raise ValueError("the LLM's arguments are not a JSON object")
    return value
