"""Two `kame serve --max-sessions 2` behind a real HAProxy (Debian's package) started with the shipped
deploy/haproxy.cfg: leastconn spreads sessions over both servers, and a server whose /healthz says
full is taken out of rotation, so the next clients go to the other."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest

from kame_cli.serve import protocol
from tests.serve.conftest import Server, start_server

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "haproxy.cfg"
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Balancer:
    """A haproxy process on the shipped config; its stats socket says what it thinks of each server."""

    def __init__(self, tmp: Path, servers: list[Server]) -> None:
        self.port = _free_port()
        self.stats = tmp / "haproxy.sock"
        env = {
            **os.environ,
            "KAME_LB_BIND": f"127.0.0.1:{self.port}",
            "KAME_LB_STATS": str(self.stats),
            **{f"KAME_SERVE_{i + 1}": f"127.0.0.1:{s.port}" for i, s in enumerate(servers)},
        }
        self.log = (tmp / "haproxy.log").open("w")
        self.process = subprocess.Popen(
            [HAPROXY, "-db", "-f", str(CONFIG)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def servers(self) -> dict[str, dict[str, str]]:
        """`show stat` of the backend's servers, by name (kame1, kame2); {} while it starts."""
        if not self.stats.exists():
            return {}
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.connect(str(self.stats))
                sock.sendall(b"show stat\n")
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
        except OSError:
            return {}
        text = b"".join(chunks).decode().lstrip("# ")
        rows = csv.DictReader(io.StringIO(text))
        return {
            r["svname"]: r for r in rows if r["pxname"] == "kame_serve" and r["svname"].startswith("kame")
        }

    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(self.stats))
            sock.sendall(line.encode() + b"\n")
            return b"".join(iter(lambda: sock.recv(65536), b"")).decode()

    def status(self, name: str) -> str:
        return self.servers().get(name, {}).get("status", "")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(5)
            self.log.close()


async def _until(check: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, f"not within {within} s: {what}"
        await asyncio.sleep(0.05)


async def _active(http: aiohttp.ClientSession, server: Server) -> float:
    async with http.get(f"{server.url}/metrics") as response:
        text = await response.text()
    return next(
        float(line.split()[1]) for line in text.splitlines() if line.startswith("kame_sessions_active ")
    )


async def _healthz(http: aiohttp.ClientSession, server: Server) -> int:
    async with http.get(f"{server.url}/healthz") as response:
        return response.status


class Client:
    """A WebSocket client that gets its session's handshake, then speaks silence at real-time pace
    (Ogg/Opus, as kame's clients do) until closed, so that the session never goes idle."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.tasks: list[asyncio.Task[None]] = []

    @classmethod
    async def open(cls, http: aiohttp.ClientSession, base: str) -> Client:
        ws = await http.ws_connect(f"{base}/api/chat?kame=1")
        client = cls(ws)
        while True:
            raw = await ws.receive(60)
            assert raw.type == aiohttp.WSMsgType.BINARY, (
                f"closed before its session: {raw} (code {ws.close_code})"
            )
            message = protocol.decode(raw.data)
            queued = isinstance(message, protocol.Metadata) and message.data.get("type") == "Queue"
            assert not queued, "the client was queued on a full server"
            if isinstance(message, protocol.Handshake):
                break
        client.tasks = [asyncio.create_task(client._speak()), asyncio.create_task(client._listen())]
        return client

    async def _listen(self) -> None:
        """Reads what the server sends, so that its buffers never fill."""
        async for _ in self.ws:
            pass

    async def _speak(self) -> None:
        import numpy as np
        import sphn

        from kame_cli.clock import FRAME_SAMPLES, FRAME_SECONDS

        writer = sphn.OpusStreamWriter(24_000)
        silence = np.zeros(FRAME_SAMPLES, np.float32)
        loop = asyncio.get_running_loop()
        start, k = loop.time(), 0
        with contextlib.suppress(ConnectionError, aiohttp.ClientError):
            while not self.ws.closed:
                ogg = writer.append_pcm(silence)
                if ogg:
                    await self.ws.send_bytes(protocol.encode(protocol.Audio(ogg)))
                k += 1
                await asyncio.sleep(max(0.0, start + k * FRAME_SECONDS - loop.time()))

    async def close(self) -> None:
        await self.ws.close()
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _scenario(balancer: Balancer, one: Server, two: Server) -> None:
    async def both_up() -> bool:
        return balancer.status("kame1") == "UP" and balancer.status("kame2") == "UP"

    async with aiohttp.ClientSession() as http:
        await _until(both_up, 30, "haproxy sees both servers up")

        # Spread: leastconn sends the second client to the server the first did not take.
        first = await Client.open(http, balancer.url)
        second = await Client.open(http, balancer.url)
        assert (await _active(http, one), await _active(http, two)) == (1, 1)
        await first.close()
        await second.close()

        async def both_idle() -> bool:
            return (await _active(http, one), await _active(http, two)) == (0, 0) and await both_up()

        await _until(both_idle, 30, "both sessions ended and both servers back in rotation")

        # Full is skipped: server one is filled by two clients that bypass the balancer, so haproxy
        # counts no connection on it and leastconn alone would send it one of the next two clients.
        direct = [await Client.open(http, one.url), await Client.open(http, one.url)]
        assert await _healthz(http, one) == 503

        async def one_down() -> bool:
            return balancer.status("kame1") == "DOWN"

        await _until(one_down, 15, "haproxy takes the full server out after its /healthz 503")
        third = await Client.open(http, balancer.url)
        fourth = await Client.open(http, balancer.url)
        assert (await _active(http, one), await _active(http, two)) == (2, 2)

        # Its sessions went on while it was out; once one ends, haproxy puts it back.
        await direct[0].close()

        async def one_up() -> bool:
            return balancer.status("kame1") == "UP"

        await _until(one_up, 30, "haproxy puts the server back when a slot frees")

        # Between two checks: with its checks paused, server one fills up yet stays in rotation, and
        # leastconn picks it (no proxied session on it); its 503 (--max-queue 0) sends the upgrade
        # request on to server two.
        balancer.command("disable health kame_serve/kame1")
        direct.append(await Client.open(http, one.url))
        assert await _healthz(http, one) == 503
        assert balancer.status("kame1") in ("UP", "no check"), balancer.status("kame1")
        await third.close()

        async def two_up() -> bool:
            return await _active(http, two) == 1 and balancer.status("kame2") == "UP"

        await _until(two_up, 30, "server two has a free slot and is back in rotation")
        fifth = await Client.open(http, balancer.url)
        assert (await _active(http, one), await _active(http, two)) == (2, 2)
        retried = sum(int(r["wretr"] or 0) + int(r["wredis"] or 0) for r in balancer.servers().values())
        assert retried >= 1, "the client reached server two without a retry: leastconn did not pick one"
        for client in (*direct[1:], fourth, fifth):
            await client.close()


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    started: list[Server] = []
    try:
        for name in ("one", "two"):
            started.append(start_server(tmp_path / name, "--max-sessions", "2", "--max-queue", "0"))
        yield started[0], started[1]
    finally:
        for server in started:
            server.terminate()


def test_haproxy_spreads_sessions_and_skips_a_full_server(
    servers: tuple[Server, Server], tmp_path: Path
) -> None:
    one, two = servers
    balancer = Balancer(tmp_path, [one, two])
    try:
        asyncio.run(_scenario(balancer, one, two))
    except BaseException:
        # What the servers and the balancer said, for the failure's report.
        print("".join(one.stderr[-30:]), "".join(two.stderr[-30:]), sep="\n---\n")
        raise
    finally:
        balancer.stop()
        print((tmp_path / "haproxy.log").read_text()[-3000:])
    assert len(one.sessions()) == 4 and len(two.sessions()) == 4, (one.sessions(), two.sessions())
