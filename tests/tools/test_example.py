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
from tests.support.llm_server import _JsonHandler, _LoopbackHttp, free_port

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


class _Refusing(_JsonHandler):
    def do_POST(self) -> None:
        self.owner.record("POST", self.path, self.headers.get("Authorization"))
        self.send_json(401, {"error": "unauthorized"})

    do_GET = do_POST


class RefusingServer(_LoopbackHttp):
    """An HTTP endpoint that records each request's Authorization header and answers 401."""

    handler = _Refusing


def test_a_url_servers_key_is_sent_as_a_bearer_and_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-test-0123456789abcdefghij"
    monkeypatch.setenv("KAME_TEST_MCP_KEY", secret)
    with RefusingServer() as refusing:
        server = ToolServerConfig(
            name="remote", allow=("x",), url=f"{refusing.url}/mcp", api_key_env="KAME_TEST_MCP_KEY"
        )
        told, offered, result = asyncio.run(_ask(server))
        sent = [header for _, _, header in refusing.requests]
    assert sent and set(sent) == {f"Bearer {secret}"}
    assert told[0].startswith("error remote did not start") and secret not in told[0] and offered == []
    assert result.outcome == "unavailable"
    monkeypatch.delenv("KAME_TEST_MCP_KEY")
    told, _, _ = asyncio.run(_ask(server))
    assert told == [
        "error remote did not start: environment variable KAME_TEST_MCP_KEY is not set: export "
        "KAME_TEST_MCP_KEY=... before starting kame; the oracle goes on without its tools"
    ]
