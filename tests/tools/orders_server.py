"""A real MCP server for the tool tests (stdio, the `mcp` SDK): an order lookup, and tools that
hang, fail, or answer 10 MB. A cancelled `hang` writes `cancelled <id>` to the file named by the
environment variable KAME_TEST_EVENTS (passed by name through the profile's `env`)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("orders")
ORDERS = {"A17": "order A17: two blue kettles, shipped Tuesday, arrives Friday"}


def _note(line: str) -> None:
    path = os.environ.get("KAME_TEST_EVENTS")
    if path:
        with Path(path).open("a", encoding="utf-8") as file:
            file.write(line + "\n")


@server.tool()
def lookup_order(order_id: str) -> str:
    """Look up an order by its id (e.g. A17)."""
    return ORDERS.get(order_id, f"no order {order_id}")


@server.tool()
async def hang(tag: str) -> str:
    """Never answers (until cancelled)."""
    _note(f"started {tag}")
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        _note(f"cancelled {tag}")
        raise
    return "never"


@server.tool()
def fail(order_id: str) -> str:
    """Always fails."""
    raise ToolError(f"the order database is down ({order_id})")


@server.tool(structured_output=False)
def huge() -> str:
    """Answers 10 MB."""
    return "x" * (10 * 1024 * 1024)


@server.tool()
def not_allowed() -> str:
    """A tool no test allows: it must never be offered."""
    return "leaked"


if __name__ == "__main__":
    server.run("stdio")
