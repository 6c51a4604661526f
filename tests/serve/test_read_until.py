"""A client waiting on the server (queued, or its session starting) is read meanwhile, so the
WebSocket heartbeat sees its pongs: aiohttp reads pongs only inside `receive()` and closes a socket
whose pong went unread. Real aiohttp server and client on loopback, with a short heartbeat."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
from aiohttp import WSMsgType, web

from kame_cli.serve import protocol
from kame_cli.serve.session import ClientNotReading, ClientStream, SessionClosed, read_until

HEARTBEAT_S = 0.2
WAIT_S = 1.0
"""How long the server makes the client wait: several heartbeats."""


@contextlib.asynccontextmanager
async def _serving(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> AsyncIterator[aiohttp.ClientSession]:
    """The handler on a loopback port, served as `kame serve` serves (AppRunner, TCPSite), and a
    client session whose base URL is that port."""
    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as client:
            yield client
    finally:
        await runner.cleanup()


async def _wait_then_handshake(reading: bool) -> tuple[WSMsgType, bytes | None]:
    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S)
        await ws.prepare(request)
        ready = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(WAIT_S, ready.set_result, None)
        if reading:
            assert await read_until(ws, ClientStream(None), ready)
        else:
            await ready
        if not ws.closed:
            await ws.send_bytes(protocol.encode(protocol.Handshake()))
            await ws.receive()  # until the client closes
        return ws

    async with _serving(handler) as client:
        ws = await client.ws_connect("/", autoping=True)
        message = await ws.receive(timeout=WAIT_S + 5)
        await ws.close()
        return message.type, message.data if message.type == WSMsgType.BINARY else None


def test_a_waiting_client_that_is_read_gets_its_handshake() -> None:
    kind, data = asyncio.run(_wait_then_handshake(reading=True))
    assert (kind, data) == (WSMsgType.BINARY, b"\x00")


def test_a_waiting_client_that_is_not_read_is_closed_by_the_heartbeat() -> None:
    # What the session's start did before it read the client: the pong went unread.
    kind, _ = asyncio.run(_wait_then_handshake(reading=False))
    assert kind in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING)


async def _read_on_server(
    read: Callable[[web.WebSocketResponse], Awaitable[object]], *, leave: bool
) -> object:
    """Serve one WebSocket (short heartbeat) and return what `read` made of it, or the `SessionClosed`
    it raised. The client leaves at once (`leave`), or stays and never reads: aiohttp answers pings
    only inside `receive()`, which it never calls."""
    result: asyncio.Future[object] = asyncio.get_running_loop().create_future()

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S)
        await ws.prepare(request)
        try:
            result.set_result(await read(ws))
        except SessionClosed as closed:
            result.set_result(closed)
        return ws

    async with _serving(handler) as client:
        ws = await client.ws_connect("/")
        try:
            if leave:
                await ws.close()
            return await asyncio.wait_for(result, WAIT_S + 5)
        finally:
            await ws.close()


def test_a_client_that_leaves_while_waiting_is_told_apart() -> None:
    async def wait_forever(ws: web.WebSocketResponse) -> bool:
        return await read_until(ws, ClientStream(None), asyncio.get_running_loop().create_future())

    assert asyncio.run(_read_on_server(wait_forever, leave=True)) is False


def test_a_client_that_answers_no_ping_is_closed_as_one_that_does_not_read() -> None:
    # The heartbeat and the full send queue race to find a client that never reads; either way it is
    # the same client, closed for the same reason and counted in kame_slow_clients_total.
    async def read_all(ws: web.WebSocketResponse) -> None:
        stream = ClientStream(None)
        while await stream.next(ws, idle=False) is not None:
            pass

    closed = asyncio.run(_read_on_server(read_all, leave=False))
    assert isinstance(closed, ClientNotReading) and closed.code == 1008, closed
    assert "does not read" in closed.reason
