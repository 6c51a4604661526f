"""Who may use `kame serve`, and how much of it: the access token, the browser Origin, connection
limits, what is held per client (TLS is in `serve.tls`).

- The token comes from an environment variable only; it is compared in constant time and never
  printed or logged.
- A browser always sends `Origin`: a page from another site must not drive a server on this
  machine (its own origin and `--allow-origin` pass; clients that send none are judged by the
  token alone).
- `ConnectionGate` wraps every TCP connection before aiohttp sees it: past the limit per client
  address the connection gets a one-line 429 and is closed; a connection that has not reached a
  handler within `handshake_s` (it sent nothing, or a request byte by byte) is closed; a WebSocket
  frame over the size limit is refused (close 1009) as its header arrives, never buffered.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hmac
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiohttp import web

_TOO_MANY = (
    b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain\r\nConnection: close\r\n"
    b"Content-Length: 38\r\n\r\ntoo many connections from this address\n"
)


def token_matches(request: web.Request, token: str) -> bool:
    """The request carries `token` as `Authorization: Bearer ...` or `?token=...` (constant time)."""
    given = request.query.get("token", "")
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        given = header[len("Bearer ") :]
    return hmac.compare_digest(given.encode("utf-8", "replace"), token.encode("utf-8"))


def origin_allowed(request: web.Request, allowed: tuple[str, ...]) -> bool:
    """No Origin (not a browser), the server's own origin, or one the operator allowed."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    return origin == f"{request.scheme}://{request.host}" or origin in allowed


class ConnectionGate:
    """Counts open TCP connections per client address and times out those that never make a request."""

    def __init__(self, per_address: int, handshake_s: float, max_message_bytes: int) -> None:
        self.per_address = per_address
        self.handshake_s = handshake_s
        self.max_message_bytes = max_message_bytes
        self.oversized = 0
        self.refused = 0
        self.timed_out = 0
        self._open: collections.Counter[str] = collections.Counter()
        self._timers: dict[Any, asyncio.TimerHandle] = {}

    def admit(self, address: str) -> bool:
        if self._open[address] >= self.per_address:
            self.refused += 1
            return False
        self._open[address] += 1
        return True

    def release(self, address: str) -> None:
        self._open[address] -= 1
        if self._open[address] <= 0:
            del self._open[address]

    def watch(self, transport: asyncio.BaseTransport) -> None:
        def expire() -> None:
            self._timers.pop(transport, None)
            self.timed_out += 1
            if isinstance(transport, asyncio.WriteTransport):
                transport.abort()
            else:
                transport.close()

        self._timers[transport] = asyncio.get_running_loop().call_later(self.handshake_s, expire)

    def reached_handler(self, transport: Any) -> None:
        """A request got through (its headers were read): the handshake timer is done."""
        timer = self._timers.pop(transport, None)
        if timer is not None:
            timer.cancel()

    def forget(self, transport: asyncio.BaseTransport) -> None:
        timer = self._timers.pop(transport, None)
        if timer is not None:
            timer.cancel()


class FrameWatch:
    """Follows a connection's WebSocket frames by their headers alone, to refuse a frame over `limit`
    bytes as its header arrives (aiohttp checks the size only once it has buffered the whole frame).

    A connection carries one request (the server closes every other kind of response): if its head
    asks for a WebSocket, every byte after the head is frames.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._head = bytearray()
        self._head_done = False
        self._websocket = False
        self._header = bytearray()
        self._skip = 0
        self._refused = False

    def feed(self, data: bytes) -> bool:
        """False as soon as a frame's header announces more than `limit` bytes (and from then on)."""
        if self._refused:
            return False
        if not self._head_done:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                if len(self._head) > 65536:  # aiohttp refuses such a head itself
                    self._head_done = True
                return True
            self._head_done = True
            self._websocket = b"upgrade: websocket" in bytes(self._head[:end]).lower()
            data = bytes(self._head[end + 4 :])
            self._head = bytearray()
        if not self._websocket:
            return True
        i, n = 0, len(data)
        while i < n:
            if self._skip:
                take = min(self._skip, n - i)
                self._skip -= take
                i += take
                continue
            need = self._header_size()
            take = min(need - len(self._header), n - i)
            self._header += data[i : i + take]
            i += take
            if len(self._header) < self._header_size():
                continue
            length = self._payload_length()
            self._header.clear()
            if length > self.limit:
                self._refused = True
                return False
            self._skip = length
        return True

    def _header_size(self) -> int:
        if len(self._header) < 2:
            return 2
        short = self._header[1] & 0x7F
        extended = 2 if short == 126 else 8 if short == 127 else 0
        return 2 + extended + (4 if self._header[1] & 0x80 else 0)

    def _payload_length(self) -> int:
        short = self._header[1] & 0x7F
        if short == 126:
            return int.from_bytes(self._header[2:4], "big")
        if short == 127:
            return int.from_bytes(self._header[2:10], "big")
        return short


def _close_frame(code: int, reason: str) -> bytes:
    payload = code.to_bytes(2, "big") + reason.encode()[:123]
    return bytes([0x88, len(payload)]) + payload


_DISCARD_S = 1.0  # after refusing a frame: read and drop for this long, so the client sees the close


class _GuardedProtocol(asyncio.Protocol):
    """aiohttp's protocol for one connection, behind the gate (every call is passed on)."""

    def __init__(self, inner: Any, gate: ConnectionGate) -> None:
        self._inner = inner
        self._gate = gate
        self._address: str | None = None
        self._transport: asyncio.BaseTransport | None = None
        self._frames = FrameWatch(gate.max_message_bytes)
        self._discarding = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if peer else "?"
        if not self._gate.admit(address):
            if isinstance(transport, asyncio.WriteTransport):
                transport.write(_TOO_MANY)
            transport.close()
            return
        self._address = address
        self._transport = transport
        self._gate.watch(transport)
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._address is None:
            return
        self._gate.release(self._address)
        if self._transport is not None:
            self._gate.forget(self._transport)
        self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._address is None or self._discarding:
            return
        if self._frames.feed(data):
            self._inner.data_received(data)
            return
        self._discarding = True
        self._gate.oversized += 1
        transport = self._transport
        if isinstance(transport, asyncio.WriteTransport):
            limit = self._gate.max_message_bytes
            transport.write(_close_frame(1009, f"a message over {limit} bytes"))
            asyncio.get_running_loop().call_later(_DISCARD_S, transport.close)

    def eof_received(self) -> bool | None:
        if self._address is None:
            return None
        result: bool | None = self._inner.eof_received()
        return result

    def pause_writing(self) -> None:
        if self._address is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._address is not None:
            self._inner.resume_writing()


def guarded_site(
    runner: web.BaseRunner, host: str, port: int, gate: ConnectionGate, ssl_context: ssl.SSLContext | None
) -> web.BaseSite:
    """A TCP site whose connections pass `gate` first."""
    from aiohttp import web

    class GuardedSite(web.TCPSite):
        async def start(self) -> None:
            await web.BaseSite.start(self)
            server = runner.server
            assert server is not None
            factory: Callable[[], asyncio.Protocol] = lambda: _GuardedProtocol(server(), gate)  # noqa: E731
            self._server = await asyncio.get_running_loop().create_server(
                factory, host, port, ssl=ssl_context
            )

    return GuardedSite(runner, host, port, ssl_context=ssl_context)


_SOCKET_SEND_BUFFER = 8192
"""Bytes the kernel may hold for a client (it doubles this): a few seconds of audio and metadata.
Without a bound, loopback autotuning lets megabytes pile up for a client that stops reading, and
the bounded send queue would only notice minutes later."""
_TRANSPORT_HIGH_WATER = 16384


def bound_send_buffers(transport: asyncio.BaseTransport | None) -> None:
    """What is held for one client, kernel and asyncio together, stays within ~50 KB."""
    import socket as socket_module

    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket_module.SOL_SOCKET, socket_module.SO_SNDBUF, _SOCKET_SEND_BUFFER)
    if isinstance(transport, asyncio.WriteTransport):
        transport.set_write_buffer_limits(high=_TRANSPORT_HIGH_WATER)
