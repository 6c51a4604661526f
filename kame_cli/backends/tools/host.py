"""The MCP client host: starts a profile's tool servers, keeps their allowed tools' schemas, and runs
calls bounded in time and size. It lives on the oracle producer's asyncio loop.

Each server has one connection task that enters the SDK's client (anyio needs its context entered
and left by the same task), lists the tools and then waits for `close()`. A server that fails to
start is one status line; the others, and the oracle, go on. Calls come from the producer's stream
tasks: cancelling such a task (a restart) cancels the MCP request, which the SDK tells the server
(`notifications/cancelled`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TextIO

from kame_cli.backends.tools.calls import ToolCallRequest, parse_arguments
from kame_cli.backends.tools.config import ToolServerConfig

StatusState = Literal["ok", "degraded", "error"]
Report = Callable[[StatusState, str], None]
Outcome = Literal["ok", "error", "timeout", "unavailable"]
_MESSAGE_CHARS = 200  # of a tool's or a server's words in a status line
_CLOSE_S = 1.0  # for the servers to end, then again once their tasks are cancelled


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """An allowed tool of a started server, as the LLM is offered it (`parameters`: the JSON
    schema of its arguments, as the server lists it)."""

    server: str
    name: str
    description: str
    parameters: dict[str, Any]

    def schema(self) -> dict[str, Any]:
        """The OpenAI function-calling declaration LiteLLM passes on (`tools=[...]`)."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What a call gave: the text the LLM gets (cut to the server's `max_result_chars`), the
    result's size before the cut, and why it failed (empty when `ok`)."""

    outcome: Outcome
    text: str
    chars: int
    truncated: bool
    message: str = ""


class ToolHost:
    """The profile's MCP servers, on the running loop: `start()`, `schemas()`, `call()`, `close()`."""

    def __init__(self, servers: Sequence[ToolServerConfig], report: Report) -> None:
        self._servers = {server.name: server for server in servers}
        self._report = report
        self._clients: dict[str, Any] = {}
        self._tools: dict[str, ToolSpec] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._closing: asyncio.Event | None = None
        self._settled: asyncio.Event | None = None
        self._starting = len(self._servers)

    def start(self) -> None:
        """Start every server's connection task (returns at once; tools are offered once listed)."""
        self._closing = asyncio.Event()
        self._settled = asyncio.Event()
        if not self._servers:
            self._settled.set()
        for server in self._servers.values():
            self._tasks.append(asyncio.get_running_loop().create_task(self._connection(server)))

    async def settled(self) -> None:
        """Return once every server has started or failed to (its status line said so)."""
        assert self._settled is not None, "start() first"
        await self._settled.wait()

    def server_of(self, tool: str) -> str:
        """The name of the server offering `tool` ("" when none does)."""
        spec = self._tools.get(tool)
        return spec.server if spec is not None else ""

    def schemas(self) -> list[dict[str, Any]]:
        """The declarations of every allowed tool of the servers started so far."""
        return [spec.schema() for spec in self._tools.values()]

    async def call(self, request: ToolCallRequest) -> ToolResult:
        """Run one call within its server's `timeout_s`; never raises but for cancellation."""
        spec = self._tools.get(request.name)
        if spec is None:
            return _failed("unavailable", f"{request.name} is not an allowed tool of a running server")
        server = self._servers[spec.server]
        client = self._clients.get(spec.server)
        if client is None:
            return _failed("unavailable", f"{spec.server} is not running")
        try:
            arguments = parse_arguments(request.arguments)
        except ValueError as err:
            return _failed("error", str(err))
        try:
            async with asyncio.timeout(server.timeout_s):
                result = await client.call_tool(request.name, arguments)
        except TimeoutError:
            return _failed("timeout", f"no answer within timeout_s={server.timeout_s:g} s (cancelled)")
        # The SDK raises its own errors, anyio's and pydantic's: whatever it is, the voice goes on.
        except Exception as err:
            return _failed("error", _one_line(err))
        text = _text_of(result)
        cut = text[: server.max_result_chars]
        if result.is_error:
            why = _short(text) or "the tool failed"
            return ToolResult("error", f"error: {cut}", len(text), len(text) > len(cut), why)
        if len(text) > len(cut):
            cut += f"\n[cut: {len(cut)} of {len(text)} characters]"
        return ToolResult("ok", cut, len(text), len(text) > server.max_result_chars)

    async def close(self) -> None:
        """End every connection (each stops its server); bounded, then the tasks are cancelled."""
        if self._closing is not None:
            self._closing.set()
        tasks = [task for task in self._tasks if not task.done()]
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=_CLOSE_S)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=_CLOSE_S)

    # --- one server ------------------------------------------------------------------------------

    async def _connection(self, server: ToolServerConfig) -> None:
        errlog = _errlog()
        started = time.monotonic()
        try:
            async with contextlib.AsyncExitStack() as stack:
                stack.callback(errlog.close)
                try:
                    async with asyncio.timeout(server.start_timeout_s):
                        client = await stack.enter_async_context(_client(server, errlog, stack))
                        listing = await client.list_tools()
                except TimeoutError:
                    why = f"not ready within {server.start_timeout_s:g} s"
                    self._started("error", _start_failed(server, why, errlog))
                    return
                except Exception as err:  # a missing program, a refused URL, a server that crashed
                    self._started("error", _start_failed(server, _one_line(err), errlog))
                    return
                self._clients[server.name] = client
                self._offer(server, listing.tools, time.monotonic() - started)
                assert self._closing is not None
                await self._closing.wait()
        except Exception as err:  # the connection broke while it ran, or while it closed
            if not (self._closing is not None and self._closing.is_set()):
                self._report(
                    "error", f"{server.name}: connection lost ({_one_line(err)}); its tools are gone"
                )
        finally:
            self._clients.pop(server.name, None)
            for name in [n for n, spec in self._tools.items() if spec.server == server.name]:
                del self._tools[name]

    def _offer(self, server: ToolServerConfig, listed: Sequence[Any], took_s: float) -> None:
        by_name = {tool.name: tool for tool in listed}
        for name in server.allow:
            tool = by_name.get(name)
            if tool is not None:
                self._tools[name] = ToolSpec(
                    server.name, name, tool.description or "", dict(tool.input_schema or {"type": "object"})
                )
        offered = [name for name in server.allow if name in by_name]
        missing = [name for name in server.allow if name not in by_name]
        unset = [name for name in server.env if name not in os.environ]
        text = f"{server.name}: {', '.join(offered) or 'no tools'} ready in {took_s:.1f} s"
        if missing:
            text += f"; the server has no {', '.join(missing)} (check allow)"
        if unset:
            text += f"; {', '.join(unset)} not set in kame's environment"
        self._started("degraded" if missing or unset else "ok", text)

    def _started(self, state: StatusState, message: str) -> None:
        self._report(state, message)
        self._starting -= 1
        if self._starting == 0 and self._settled is not None:
            self._settled.set()


def import_sdk() -> None:
    """Import the MCP SDK's client now, in the calling thread, not on the loop when servers start."""
    import importlib

    for name in ("mcp", "mcp.client.stdio", "mcp.client.streamable_http"):
        importlib.import_module(name)


class _KeyMissing(Exception):
    """The variable naming a server's key is unset: said as it is, without an exception's name."""


def _client(server: ToolServerConfig, errlog: TextIO, stack: contextlib.AsyncExitStack) -> Any:
    from mcp import Client, StdioServerParameters
    from mcp.client.stdio import stdio_client

    if server.url is not None:
        if server.api_key_env is None:
            return Client(server.url)
        return Client(_http_with_key(server.url, server.api_key_env, stack))
    assert server.command is not None
    params = StdioServerParameters(
        command=program(server.command),
        args=list(server.args),
        env={name: os.environ[name] for name in server.env if name in os.environ},
        cwd=server.cwd,
    )
    # The server's stderr goes to a file of ours: it would otherwise write over the live panel.
    return Client(stdio_client(params, errlog=errlog))


def program(command: str) -> str:
    """`python` is kame's own interpreter: it has the `mcp` SDK a Python server needs."""
    return sys.executable if command in ("python", "python3") else command


def _http_with_key(url: str, name: str, stack: contextlib.AsyncExitStack) -> Any:
    """The streamable-HTTP transport to `url`, sending the key from variable `name` as a bearer key."""
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    key = os.environ.get(name)
    if not key:
        raise _KeyMissing(f"environment variable {name} is not set: export {name}=... before starting kame")
    # The SDK's own timeouts for MCP: a server may hold a response stream open for long.
    http = httpx2.AsyncClient(
        headers={"Authorization": f"Bearer {key}"}, timeout=httpx2.Timeout(30.0, read=300.0)
    )
    stack.push_async_callback(http.aclose)
    return streamable_http_client(url, http_client=http)


def _errlog() -> TextIO:
    return tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")


def _start_failed(server: ToolServerConfig, why: str, errlog: TextIO) -> str:
    said = _last_line(errlog)
    told = f" (it said: {said})" if said else ""
    return f"{server.name} did not start: {why}{told}; the oracle goes on without its tools"


def _last_line(errlog: TextIO) -> str:
    try:
        errlog.flush()
        errlog.seek(0, os.SEEK_END)
        size = errlog.tell()
        errlog.seek(max(0, size - 4096))
        lines = [line.strip() for line in errlog.read().splitlines() if line.strip()]
    except (OSError, ValueError):
        return ""
    return _short(lines[-1]) if lines else ""


def _text_of(result: Any) -> str:
    parts = []
    for block in result.content or ():
        text = getattr(block, "text", None)
        parts.append(text if isinstance(text, str) else f"[{getattr(block, 'type', 'content')}]")
    return "\n".join(parts)


def _failed(outcome: Outcome, message: str) -> ToolResult:
    # The LLM is told too, so that it can say it could not check.
    return ToolResult(outcome, f"error: {message}", 0, False, message)


def _short(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _MESSAGE_CHARS else line[: _MESSAGE_CHARS - 3] + "..."


def _one_line(err: BaseException) -> str:
    # anyio's task groups wrap the real cause (a refused connection, a server that exited).
    while isinstance(err, BaseExceptionGroup) and err.exceptions:
        err = err.exceptions[0]
    text = _short(str(err))
    if isinstance(err, _KeyMissing):
        return text
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
