"""The worked example (examples/tools/): its profile loads, and its MCP server offers both tools and
answers, over stdio as the profile starts it and over streamable HTTP."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kame_cli.backends.tools.calls import ToolCallRequest
from kame_cli.backends.tools.config import ToolServerConfig
from kame_cli.backends.tools.host import ToolHost, ToolResult
from kame_cli.profiles.profile import load_profile
from tests.support.llm_server import free_port

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "tools"


async def _ask(server: ToolServerConfig) -> tuple[list[str], list[str], ToolResult]:
    told: list[str] = []
    host = ToolHost([server], lambda state, message: told.append(f"{state} {message}"))
    host.start()
    try:
        async with asyncio.timeout(server.start_timeout_s):
            await host.settled()
        offered = [schema["function"]["name"] for schema in host.schemas()]
        return told, offered, await host.call(ToolCallRequest("c1", "lookup_order", '{"order_id": "a17"}'))
    finally:
        await host.close()


def test_the_example_profile_starts_its_server_over_stdio() -> None:
    profile = load_profile(str(EXAMPLE / "shop.toml"))
    (server,) = profile.tools
    assert server.cwd == str(EXAMPLE) and profile.prompt.tool_bridge == "let me check"
    told, offered, result = asyncio.run(_ask(server))
    assert told[0].startswith("ok shop: lookup_order, store_hours ready")
    assert offered == ["lookup_order", "store_hours"]
    assert (result.outcome, result.text) == (
        "ok",
        "order a17: two blue kettles, shipped Tuesday by post, arriving Friday",
    )


@pytest.fixture
def http_server() -> Iterator[str]:
    port = free_port()
    child = subprocess.Popen(
        [sys.executable, "shop_server.py", "--http", str(port)],
        cwd=EXAMPLE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60.0
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert child.poll() is None and time.monotonic() < deadline, "the HTTP server did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        child.terminate()
        child.wait(timeout=10)


def test_the_example_server_answers_over_streamable_http(http_server: str) -> None:
    (stdio,) = load_profile(str(EXAMPLE / "shop.toml")).tools
    server = dataclasses.replace(stdio, command=None, args=(), cwd=None, url=http_server)
    told, offered, result = asyncio.run(_ask(server))
    assert told[0].startswith("ok shop: lookup_order, store_hours ready") and len(offered) == 2
    assert result.outcome == "ok" and "two blue kettles" in result.text
