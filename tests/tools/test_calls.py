"""Tool calls gathered from streamed deltas, in the shapes LiteLLM hands them on."""

from __future__ import annotations

import pytest

from kame_cli.backends.tools.calls import ToolCallDeltas, ToolCallRequest, parse_arguments


def test_two_calls_streamed_interleaved_are_gathered_by_index() -> None:
    calls = ToolCallDeltas()
    calls.add([{"index": 0, "id": "a", "function": {"name": "lookup_order", "arguments": '{"order'}}])
    calls.add([{"index": 1, "id": "b", "function": {"name": "store_hours", "arguments": ""}}])
    calls.add([{"index": 0, "function": {"arguments": '_id": "A17"}'}}])
    calls.add([{"index": 1, "function": {"arguments": '{"day": "sunday"}'}}])
    calls.add([{"index": 2, "function": {"arguments": "{}"}}])  # never named: no call
    assert calls.requests() == [
        ToolCallRequest("a", "lookup_order", '{"order_id": "A17"}'),
        ToolCallRequest("b", "store_hours", '{"day": "sunday"}'),
    ]


def test_ollamas_whole_call_in_one_chunk_through_litellms_delta() -> None:
    from kame_cli.backends.oracle.llm import import_litellm

    import_litellm()
    from litellm.types.utils import Delta

    # Ollama sends the arguments as an object, once; LiteLLM makes them JSON text.
    delta = Delta(
        tool_calls=[{"id": "x", "function": {"name": "lookup_order", "arguments": {"order_id": "A17"}}}]
    )
    calls = ToolCallDeltas()
    calls.add(delta.tool_calls)
    (request,) = calls.requests()
    assert (request.name, parse_arguments(request.arguments)) == ("lookup_order", {"order_id": "A17"})


@pytest.mark.parametrize(("text", "why"), [("{bad", "not JSON"), ("[1]", "not a JSON object")])
def test_arguments_that_are_not_an_object_are_refused_with_a_reason(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_arguments(text)
    assert parse_arguments("  ") == {}
