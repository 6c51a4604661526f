"""A small MCP server for kame's worked example: a shop's orders and opening hours.

    python shop_server.py                  # stdio: kame starts it (examples/tools/shop.toml)
    python shop_server.py --http 8765      # streamable HTTP on 127.0.0.1:8765/mcp

Replace the two dictionaries with calls to your own systems. A tool's docstring is what the LLM
reads to decide when to call it: say what it answers and what its argument looks like.
"""

from __future__ import annotations

import sys

from mcp.server.mcpserver import MCPServer

server = MCPServer("shop")

ORDERS = {
    "A17": "two blue kettles, shipped Tuesday by post, arriving Friday",
    "B42": "one toaster, paid, waiting for stock until next Monday",
}
HOURS = {
    "weekday": "9 am to 6 pm",
    "saturday": "10 am to 4 pm",
    "sunday": "closed",
}


@server.tool()
def lookup_order(order_id: str) -> str:
    """Where a customer's order is: its items and delivery. `order_id` looks like A17."""
    found = ORDERS.get(order_id.strip().upper())
    return f"order {order_id}: {found}" if found else f"no order {order_id} (ids look like A17)"


@server.tool()
def store_hours(day: str) -> str:
    """The shop's opening hours on `day` (monday ... sunday)."""
    name = day.strip().lower()
    key = name if name in ("saturday", "sunday") else "weekday"
    if HOURS[key] == "closed":
        return f"the shop is closed on {name}"
    return f"on {name or 'weekdays'} the shop is open {HOURS[key]}"


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run("stdio")
