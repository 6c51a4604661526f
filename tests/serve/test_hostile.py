"""Hostile clients, each while a well-behaved session runs beside them: each gets a clear close or
error, the well-behaved session's output has no gap, and the server's memory stays bounded."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import aiohttp
import numpy as np
import psutil
import pytest

from kame_cli.clock import FRAME_SAMPLES
from kame_cli.serve import protocol
from tests.serve.conftest import Server, serving
from tests.session.conftest import QUESTION, read_events, wait_for_event, wait_until
from tests.support.speech import synthesize

HANDSHAKE_S = 2.0
IDLE_S = 3.0


LIMITS = (
    "--max-queue",
    "8",
    "--handshake-timeout",
    str(HANDSHAKE_S),
    "--connections-per-address",
    "8",
    "--idle-timeout",
    str(IDLE_S),
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serving(tmp_path_factory.mktemp("hostile") / "logs", *LIMITS) as running:
        yield running


class WellBehaved:
    """Speaks at real-time pace and keeps every output index and every decoded sample it gets."""

    def __init__(self, url: str) -> None:
        import sphn

        self.url = url
        self.indices: list[int] = []
        self.samples = 0
        self.closed_early = False
        self._writer = sphn.OpusStreamWriter(24_000)
        self._reader = sphn.OpusStreamReader(24_000)
        self.ready = asyncio.Event()
        self.done = asyncio.Event()

    async def run(self, http: aiohttp.ClientSession) -> None:
        speech = np.concatenate([synthesize(QUESTION), np.zeros(24_000 * 60, np.float32)])
        async with http.ws_connect(f"{self.url}/api/chat?kame=1") as ws:
            first = await ws.receive(60)
            assert protocol.decode(first.data) == protocol.Handshake()
            self.ready.set()
            receiving = asyncio.create_task(self._receive(ws))
            loop = asyncio.get_running_loop()
            start = loop.time()
            for i in range(len(speech) // FRAME_SAMPLES):
                if self.done.is_set():
                    break
                ogg = self._writer.append_pcm(speech[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES])
                if ogg:
                    await ws.send_bytes(protocol.encode(protocol.Audio(ogg)))
                await asyncio.sleep(max(0.0, start + (i + 1) * 0.08 - loop.time()))
            await ws.close()
            await receiving

    async def _receive(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            decoded = protocol.decode(message.data)
            if isinstance(decoded, protocol.Audio):
                self.samples += self._reader.append_bytes(decoded.ogg).size
            elif isinstance(decoded, protocol.Metadata) and decoded.data.get("type") == "Output":
                self.indices.append(int(decoded.data["index"]))
            elif isinstance(decoded, protocol.Error):
                self.closed_early = True


async def _closed_with(http: aiohttp.ClientSession, url: str, payload: bytes) -> int | None:
    async with http.ws_connect(f"{url}/api/chat") as ws:
        with contextlib.suppress(ConnectionError, aiohttp.ClientError):
            await ws.send_bytes(payload)
        while True:
            message = await ws.receive(30)
            if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                return ws.close_code


def _upgrade_request(port: int) -> bytes:
    return (
        f"GET /api/chat HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def _half_a_frame(port: int) -> bytes:
    """Upgrades, then sends the first half of a 1000-byte audio frame and disconnects."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(_upgrade_request(port))
        response = b""
        while b"\r\n\r\n" not in response:
            response += sock.recv(4096)
        header = bytes([0x82, 0x80 | 126]) + (1000).to_bytes(2, "big") + b"\x01\x02\x03\x04"
        sock.sendall(header + bytes(500))
    return response.split(b"\r\n", 1)[0]


def _silent_connection(port: int) -> bytes:
    """Connects and sends nothing: what the server sends before it closes (b"" when it just closes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=HANDSHAKE_S + 30) as sock:
        return sock.recv(4096)


def _flood(port: int, count: int) -> list[bytes]:
    """`count` connections from one address (127.0.0.2) that send nothing; what each one got."""
    socks = []
    for _ in range(count):
        sock = socket.socket()
        sock.settimeout(HANDSHAKE_S + 30)
        sock.bind(("127.0.0.2", 0))
        sock.connect(("127.0.0.1", port))
        socks.append(sock)
    try:
        return [sock.recv(4096) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


async def _hostiles(server: Server, well: WellBehaved) -> dict[str, object]:
    url = server.url
    seen: dict[str, object] = {}
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/api/chat") as plain:
            seen["plain_http"] = plain.status
        seen["kind_9"] = await _closed_with(http, url, b"\x09hello")
        seen["not_opus"] = await _closed_with(http, url, b"\x01" + b"RIFF not an ogg stream" * 10)
        seen["16_mib"] = await _closed_with(http, url, b"\x01" + bytes(16 << 20))
    seen["half_frame"] = await asyncio.to_thread(_half_a_frame, server.port)
    seen["silent"] = await asyncio.to_thread(_silent_connection, server.port)
    seen["flood"] = await asyncio.to_thread(_flood, server.port, 50)
    return seen


def test_hostile_clients_are_closed_and_the_session_beside_them_goes_on(server: Server) -> None:
    process = psutil.Process(server.process.pid)

    async def scenario() -> tuple[WellBehaved, dict[str, object], int, int]:
        well = WellBehaved(server.url)
        async with aiohttp.ClientSession() as http:
            running = asyncio.create_task(well.run(http))
            await asyncio.wait_for(well.ready.wait(), 60)
            rss_before = process.memory_info().rss
            seen = await _hostiles(server, well)
            rss_after = process.memory_info().rss
            well.done.set()
            await running
        return well, seen, rss_before, rss_after

    well, seen, rss_before, rss_after = asyncio.run(scenario())
    assert seen["plain_http"] == 426
    assert seen["kind_9"] == 1003 and seen["not_opus"] == 1003
    assert seen["16_mib"] == 1009  # message too big, refused as its header arrived
    assert seen["half_frame"] == b"HTTP/1.1 101 Switching Protocols"
    assert seen["silent"] == b""  # closed after the handshake deadline
    flood = seen["flood"]
    assert isinstance(flood, list)
    assert sum(reply.startswith(b"HTTP/1.1 429") for reply in flood) == 50 - 8
    assert sum(reply == b"" for reply in flood) == 8
    # Not one 16 MiB message was held in memory.
    assert rss_after - rss_before < 16 << 20

    # The well-behaved session never stopped, and everything its front-end produced reached it, in
    # order. (On a loaded machine the loop itself may fall behind and drop input frames by its lag
    # bound: those steps never exist, and the log counts them.)
    assert not well.closed_early
    assert len(well.indices) > 25 and well.indices == sorted(set(well.indices))
    (session,) = server.sessions()
    events = read_events(session / "events.jsonl")
    steps = sum(e["type"] == "StepTiming" for e in events)
    lag_dropped = sum(e["count"] for e in events if e["type"] == "FramesDropped")
    in_flight_at_close = 3
    assert steps - in_flight_at_close <= len(well.indices) <= steps
    assert well.indices[-1] + 1 - len(well.indices) <= lag_dropped
    assert well.samples >= (len(well.indices) - 2) * FRAME_SAMPLES
    assert server.process.poll() is None
    wait_until(lambda: asyncio.run(_health(server.url)) == 200, 30)  # free again once it has ended


async def _health(url: str) -> int:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/healthz") as response:
        return response.status


def _masked_frame(payload: bytes) -> bytes:
    mask = b"\x11\x22\x33\x44"
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    if len(payload) < 126:
        length = bytes([0x80 | len(payload)])
    else:
        length = bytes([0x80 | 126]) + len(payload).to_bytes(2, "big")
    return bytes([0x82]) + length + mask + masked


def _never_reads(port: int, seconds: float) -> None:
    """A kame client that speaks (silence, as Opus, in real time) and never reads a byte."""
    import sphn

    writer = sphn.OpusStreamWriter(24_000)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    sock.connect(("127.0.0.1", port))
    try:
        sock.sendall(_upgrade_request(port).replace(b"/api/chat ", b"/api/chat?kame=1 "))
        silence = np.zeros(FRAME_SAMPLES, np.float32)
        start = time.monotonic()
        step = 0
        while time.monotonic() - start < seconds:
            ogg = writer.append_pcm(silence)
            try:
                sock.sendall(_masked_frame(protocol.encode(protocol.Audio(ogg))))
            except OSError:
                return  # the server dropped it
            step += 1
            time.sleep(max(0.0, start + step * 0.08 - time.monotonic()))
    finally:
        sock.close()


async def _metric(url: str, name: str) -> float:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as response:
        text = await response.text()
    return next(float(line.split()[1]) for line in text.splitlines() if line.startswith(name + " "))


def test_a_client_that_never_reads_is_disconnected_and_memory_stays_flat(server: Server) -> None:
    wait_until(lambda: asyncio.run(_health(server.url)) == 200, 60)
    process = psutil.Process(server.process.pid)
    rss_before = process.memory_info().rss
    # Dropped within seconds once its session runs; the bounds leave room for a session that starts
    # slowly on a loaded machine (a fresh front-end child): the client speaks for longer than them.
    speaking = threading.Thread(target=_never_reads, args=(server.port, 240.0), daemon=True)
    speaking.start()
    wait_until(lambda: asyncio.run(_metric(server.url, "kame_slow_clients_total")) >= 1, 200)
    assert process.memory_info().rss - rss_before < 8 << 20
    speaking.join(10)
    assert not speaking.is_alive()  # its connection was dropped: its sends failed
    wait_until(lambda: asyncio.run(_health(server.url)) == 200, 30)


async def _silent_session(url: str) -> tuple[int | None, float]:
    """A kame client that gets its session and then sends nothing: the close code, and after how long."""
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{url}/api/chat?kame=1") as ws:
        while True:
            message = await ws.receive(60)
            if (
                message.type != aiohttp.WSMsgType.BINARY
                or protocol.decode(message.data) == protocol.Handshake()
            ):
                break
        started = time.monotonic()
        while True:
            message = await ws.receive(60)
            if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                return ws.close_code, time.monotonic() - started


def test_an_active_client_gone_quiet_or_gone_mid_frame_ends_with_a_complete_log(server: Server) -> None:
    wait_until(lambda: asyncio.run(_health(server.url)) == 200, 60)
    before = set(server.sessions())
    code, after = asyncio.run(_silent_session(server.url))
    assert code == 1001 and after >= IDLE_S - 0.5  # closed as idle, not before
    wait_until(lambda: asyncio.run(_health(server.url)) == 200, 30)
    assert _half_a_frame(server.port) == b"HTTP/1.1 101 Switching Protocols"  # now as the active session
    wait_until(lambda: asyncio.run(_health(server.url)) == 200, 30)
    new = sorted(set(server.sessions()) - before)
    assert len(new) == 2
    for log_dir in new:
        # The front-end is free before the session's back-end and log have closed: wait for the log.
        wait_for_event(log_dir / "events.jsonl", lambda e: e.get("message") == "stopped", 30)
        events = read_events(log_dir / "events.jsonl")
        assert events[-1]["type"] == "BackendStatus" and events[-1]["message"] == "stopped"
        assert sum(e["type"] == "SessionSummary" for e in events) == 1
