"""Faults: a session's back-end dies (its voice goes on, its client is told); the front-end process
dies (every client gets an error and is closed, the server exits 1 with one line)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp
import psutil

from kame_cli.events import BackendStatus
from kame_cli.serve import metadata, protocol
from tests.serve.conftest import OWN_PROCESSES, start_server


def _children(pid: int, what: str) -> list[psutil.Process]:
    """The server's processes whose command line holds `what` (a module) or that `what` names (a
    back-end forked from the template shows as `kame-backend`), oldest first."""
    found = [
        p
        for p in psutil.Process(pid).children(recursive=True)
        if p.name() == what or what in " ".join(p.cmdline())
    ]
    return sorted(found, key=lambda p: p.create_time())


async def _until_output(ws: aiohttp.ClientWebSocketResponse, outputs: int) -> list[protocol.Message]:
    """Messages until `outputs` more output steps have come."""
    seen: list[protocol.Message] = []
    while outputs > 0:
        message = protocol.decode((await ws.receive(30)).data)
        seen.append(message)
        if isinstance(message, protocol.Metadata) and message.data.get("type") == "Output":
            outputs -= 1
    return seen


async def _scenario(url: str, pid: int) -> tuple[list[protocol.Message], list[protocol.Message], int | None]:
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{url}/api/chat?kame=1")
        assert protocol.decode((await ws.receive(60)).data) == protocol.Handshake()
        await _until_output(ws, 5)
        # The session's back-end is the older of the two (the other is the spare, loaded ahead).
        _children(pid, "kame-backend")[0].send_signal(signal.SIGKILL)
        after_backend = await _until_output(ws, 25)  # the voice goes on
        (host,) = _children(pid, "kame_cli.serve.host")
        host.send_signal(signal.SIGKILL)
        after_host: list[protocol.Message] = []
        while True:
            message = await ws.receive(30)
            if message.type != aiohttp.WSMsgType.BINARY:
                return after_backend, after_host, ws.close_code
            after_host.append(protocol.decode(message.data))


def test_backend_death_is_told_and_frontend_death_ends_every_session_and_the_server(tmp_path: Path) -> None:
    server = start_server(tmp_path / "logs", env=OWN_PROCESSES)
    try:
        after_backend, after_host, code = asyncio.run(_scenario(server.url, server.process.pid))
        exit_code = server.process.wait(30)
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait(5)
    statuses = [
        info
        for m in after_backend
        if isinstance(m, protocol.Metadata) and isinstance(info := metadata.from_json(m.data), BackendStatus)
    ]
    assert any(s.component == "backend" and s.state == "error" for s in statuses)
    assert protocol.Error("the server's front-end process died") in after_host
    assert code == 1011
    assert exit_code == 1
    last = server.stderr[-1].strip()
    assert last.startswith("kame: error: the front-end process died") and "Traceback" not in "".join(
        server.stderr
    )
    (session,) = server.sessions()
    assert '"message": "stopped"' in (session / "events.jsonl").read_text().splitlines()[-1]
