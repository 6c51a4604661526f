"""One session at a time: a second client waits for its handshake; one past --max-queue gets 503."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from kame_cli.serve import protocol
from kame_cli.session.template import SharedTemplates
from tests.serve.conftest import Server


async def _metric(http: aiohttp.ClientSession, url: str, name: str) -> float:
    async with http.get(f"{url}/metrics") as response:
        text = await response.text()
    return next(float(line.split()[1]) for line in text.splitlines() if line.startswith(name + " "))


async def _until(check, within: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, f"not within {within} s"
        await asyncio.sleep(0.05)


async def _first_message(ws: aiohttp.ClientWebSocketResponse, within: float) -> protocol.Message:
    message = await ws.receive(within)
    assert message.type == aiohttp.WSMsgType.BINARY, message
    return protocol.decode(message.data)


async def _scenario(url: str) -> None:
    chat = f"{url}/api/chat?kame=1"
    async with aiohttp.ClientSession() as http:
        await _until(lambda: _healthy(http, url), 60)  # the package's server, free of earlier sessions
        first = await http.ws_connect(chat)
        assert isinstance(await _first_message(first, 60), protocol.Handshake)
        async with http.get(f"{url}/healthz") as health:
            assert health.status == 503 and await health.text() == "full\n"

        second = await http.ws_connect(chat)
        await _until(lambda: _check_queued(http, url, 1.0), 10)

        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(chat)
        assert refused.value.status == 503
        assert refused.value.headers is not None and int(refused.value.headers["Retry-After"]) > 0

        # A kame client is told its place while it waits.
        assert await _first_message(second, 10) == protocol.Metadata({"type": "Queue", "place": 1})
        await first.close()
        # Its turn came: the handshake now, and the voice after it.
        assert isinstance(await _first_message(second, 60), protocol.Handshake)
        kinds = {type(await _first_message(second, 30)) for _ in range(5)}
        assert kinds & {protocol.Audio, protocol.Metadata}
        await second.close()
        await _until(lambda: _healthy(http, url), 30)
        assert await _metric(http, url, "kame_refused_total" + '{reason="full"}') >= 1


async def _check_queued(http: aiohttp.ClientSession, url: str, value: float) -> bool:
    return await _metric(http, url, "kame_sessions_queued") == value


async def _healthy(http: aiohttp.ClientSession, url: str) -> bool:
    async with http.get(f"{url}/healthz") as health:
        return health.status == 200


def test_second_client_waits_for_its_turn_and_one_past_the_queue_gets_503(server: Server) -> None:
    asyncio.run(_scenario(server.url))


def test_the_server_forks_its_host_and_back_ends_from_the_templates_kame_templates_names(
    server: Server, session_templates: SharedTemplates | None
) -> None:
    """Inside the suite `KAME_TEMPLATES` names this worker's templates: the server's front-end host
    and its spare back-end are their forks, not processes of its own."""
    import psutil

    def names(pid: int) -> set[str]:
        # Another test's fork may exit between the listing and the reading: it is no longer a child.
        found: set[str] = set()
        for child in psutil.Process(pid).children():
            try:
                found.add(child.name())
            except psutil.NoSuchProcess:
                continue
        return found

    assert session_templates is not None
    forked = {
        role: names(template.pid)
        for role, template in session_templates.templates.items()
        if template.pid is not None
    }
    assert "kame-host" in forked["frontend"] and "kame-backend" in forked["backend"], forked
    own = [" ".join(p.cmdline()) for p in psutil.Process(server.process.pid).children(recursive=True)]
    assert not any("kame_cli.serve.host" in c or "template_proc" in c for c in own), own
