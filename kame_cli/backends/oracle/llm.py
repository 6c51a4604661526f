"""Streaming chat completions from any LLM through LiteLLM, bounded in time, failing fast."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncGenerator, Sequence
from typing import TYPE_CHECKING, Any

from kame_cli.backends.oracle.config import LlmConfig, redact_userinfo, resolve_api_key
from kame_cli.backends.oracle.faults import StreamCutOff, StreamTimeout
from kame_cli.heap import long_lived_objects

if TYPE_CHECKING:
    from kame_cli.backends.tools.calls import ToolCallDeltas


LITELLM_IMPORT_ENV = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_MODE": "PRODUCTION"}
"""What kame sets, where the user did not, before LiteLLM's import."""


def import_litellm() -> Any:
    """Import LiteLLM without its network price-list fetch, its error banner, and its `.env` loading."""
    # Must be set before the first import: LiteLLM reads them at import time. In its default "DEV"
    # mode it loads a `.env` file from the current directory into the environment: keys and servers
    # that the user never named, from whatever folder kame runs in.
    for name, value in LITELLM_IMPORT_ENV.items():
        os.environ.setdefault(name, value)
    # Its ~2400 models live as long as the process (`heap.py`); on later calls nothing is imported.
    with long_lived_objects() if "litellm" not in sys.modules else contextlib.nullcontext():
        import litellm

        litellm.suppress_debug_info = True
        litellm.telemetry = False
        _preload_lazy_modules()
    return litellm


def _preload_lazy_modules() -> None:
    """Import now what LiteLLM's first call would import on the event loop (the OpenAI SDK: about
    450 modules, 1-3 s, 20 s at low priority on a busy machine), during which no poll can run."""
    import importlib

    for name in (
        "openai",
        "openai.types.chat",
        "openai.resources.chat.completions",
        "litellm.llms.openai.openai",
        "litellm.litellm_core_utils.streaming_handler",
        "litellm.litellm_core_utils.llm_request_utils",
        "litellm._service_logger",
        "litellm.llms.openai_like.dynamic_config",
        "litellm.llms.litellm_proxy.chat.transformation",
    ):
        try:
            importlib.import_module(name)
        except ImportError:  # another LiteLLM/OpenAI layout: the first call imports what it needs
            continue


class LlmClient:
    """One configured LLM: `stream(messages)` yields the answer's text chunks as they arrive."""

    def __init__(self, llm: LlmConfig, api_base: str | None = None) -> None:
        self.llm = llm
        self.api_base = api_base if api_base is not None else llm.api_base
        self.api_key = resolve_api_key(llm, self.api_base)
        self._litellm = import_litellm()

    @property
    def where(self) -> str:
        """Model and server, for status messages (without any credentials in the URL)."""
        if not self.api_base:
            return self.llm.litellm_model
        return f"{self.llm.litellm_model} at {redact_userinfo(self.api_base)}"

    async def stream(
        self,
        messages: Sequence[dict[str, Any]],
        *,
        tools: Sequence[dict[str, Any]] = (),
        tool_choice: str | None = None,
        calls: ToolCallDeltas | None = None,
    ) -> AsyncGenerator[str, None]:
        """Text chunks of one answer; raises on any failure (`StreamTimeout` when bounds are hit).

        With `tools` (OpenAI function declarations) the LLM may ask for calls instead of, or after,
        words: their streamed pieces go to `calls`.

        The stream-end rule: an answer is complete only when the server said so, with a finish
        reason (OpenAI's `finish_reason`, Ollama's `done`, Anthropic's stop event, as LiteLLM
        records them). A body that just ends (a close-delimited response cut after two chunks)
        raises `StreamCutOff`. Closing the generator (or cancelling the task iterating it) closes
        the HTTP request.
        """
        llm = self.llm
        deadline = time.monotonic() + llm.timeout_s
        kwargs: dict[str, Any] = dict(llm.extra)
        if self.api_base:
            kwargs["api_base"] = self.api_base
        if self.api_key is not None:
            kwargs["api_key"] = self.api_key
        if tools:
            kwargs["tools"] = list(tools)
            if tool_choice is not None:
                kwargs["tool_choice"] = tool_choice
        call = self._litellm.acompletion(
            model=llm.litellm_model,
            messages=list(messages),
            stream=True,
            max_tokens=llm.max_tokens,
            temperature=llm.temperature,
            # LiteLLM's timeout is per socket read; ours (below) bound waits and the whole call.
            timeout=llm.read_timeout_s + 1.0,
            max_retries=0,
            num_retries=0,
            **kwargs,
        )
        response = await self._bounded(call, deadline, first_chunk_seen=False)
        seen = False
        finish_seen = False
        try:
            iterator = response.__aiter__()
            while True:
                try:
                    chunk = await self._bounded(iterator.__anext__(), deadline, first_chunk_seen=seen)
                except StopAsyncIteration:
                    if not _finished_by_server(response, finish_seen):
                        raise StreamCutOff(
                            "stream ended without a finish reason (cut off)", first_chunk_seen=seen
                        ) from None
                    return
                if not chunk.choices:
                    continue
                finish_seen = finish_seen or bool(getattr(chunk.choices[0], "finish_reason", None))
                delta = chunk.choices[0].delta
                if calls is not None and getattr(delta, "tool_calls", None):
                    seen = True
                    calls.add(delta.tool_calls)
                text = delta.content
                if text:
                    seen = True
                    yield text
        finally:
            await _close(response)

    async def close(self) -> None:
        """Close LiteLLM's cached HTTP sessions, which belong to the event loop about to close."""
        try:
            await asyncio.wait_for(self._litellm.close_litellm_async_clients(), timeout=0.2)
        except (TimeoutError, OSError, RuntimeError):
            return  # the loop is closing anyway; at worst a ResourceWarning

    async def _bounded(self, awaitable: Any, deadline: float, *, first_chunk_seen: bool) -> Any:
        remaining = deadline - time.monotonic()
        wait = min(self.llm.read_timeout_s, remaining)
        try:
            if wait <= 0:
                # Past the deadline: never start the call (a coroutine left unstarted warns).
                if asyncio.iscoroutine(awaitable):
                    awaitable.close()
                raise TimeoutError
            return await asyncio.wait_for(awaitable, timeout=wait)
        except TimeoutError:
            if remaining <= self.llm.read_timeout_s:
                message = f"answer not finished within timeout_s={self.llm.timeout_s:g} s"
            elif first_chunk_seen:
                message = f"stream stalled for read_timeout_s={self.llm.read_timeout_s:g} s"
            else:
                message = f"no answer within read_timeout_s={self.llm.read_timeout_s:g} s"
            raise StreamTimeout(message, first_chunk_seen=first_chunk_seen) from None


def _finished_by_server(response: Any, finish_seen: bool) -> bool:
    """Whether the provider sent its own end-of-answer signal before the body ended.

    LiteLLM adds a last chunk with `finish_reason="stop"` to every stream that ends, cut or not;
    what the server really sent is in the wrapper's `received_finish_reason`. Without that
    attribute (another LiteLLM), the chunks' finish reasons are all there is to go on.
    """
    if hasattr(response, "received_finish_reason"):
        return bool(response.received_finish_reason)
    return finish_seen


async def _close(response: Any) -> None:
    # Closing releases the connection at once; a cancelled task still runs this.
    close = getattr(response, "aclose", None)
    if close is None:
        return
    try:
        await asyncio.wait_for(close(), timeout=0.2)
    except (TimeoutError, OSError, RuntimeError):
        # The request is gone either way; a close that fails must not mask the real outcome.
        return
