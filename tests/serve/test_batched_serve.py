"""`kame serve --max-sessions N`: N sessions at once on one batched front-end, then the queue."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from kame_cli.serve import protocol
from kame_cli.serve.admission import Admission
from tests.serve.conftest import start_server
from tests.serve.test_admission import _check_queued, _first_message, _healthy, _until


def test_admission_with_two_slots_then_a_line() -> None:
    async def scenario() -> None:
        admission = Admission(max_queue=1, slots=2)
        first, second, third = admission.enter(), admission.enter(), admission.enter()
        assert first is not None and second is not None and third is not None
        assert first.ready and second.ready and not third.ready
        assert admission.active_count == 2 and not admission.can_start_now()
        assert admission.enter() is None  # past the line
        admission.leave(first)
        assert third.ready and admission.active_count == 2 and admission.queued == 0
        admission.leave(second)
        assert admission.can_start_now()

    asyncio.run(scenario())


async def _audio(ws: aiohttp.ClientWebSocketResponse, within: float) -> None:
    for _ in range(50):
        if isinstance(await _first_message(ws, within), protocol.Audio):
            return
    raise AssertionError("no audio from the server")


async def _scenario(url: str) -> None:
    chat = f"{url}/api/chat?kame=1"
    async with aiohttp.ClientSession() as http:
        await _until(lambda: _healthy(http, url), 60)
        first = await http.ws_connect(chat)
        assert isinstance(await _first_message(first, 60), protocol.Handshake)
        async with http.get(f"{url}/healthz") as health:
            assert health.status == 200  # one slot of two is taken: still room
        second = await http.ws_connect(chat)
        assert isinstance(await _first_message(second, 60), protocol.Handshake)
        async with http.get(f"{url}/healthz") as health:
            assert health.status == 503 and await health.text() == "full\n"
        # Both are stepped at once: each hears the voice while the other is connected.
        await asyncio.gather(_audio(first, 60), _audio(second, 60))
        third = await http.ws_connect(chat)
        await _until(lambda: _check_queued(http, url, 1.0), 10)
        await first.close()
        assert await _first_message(third, 10) == protocol.Metadata({"type": "Queue", "place": 1})
        assert isinstance(await _first_message(third, 60), protocol.Handshake)
        await _audio(third, 60)
        await asyncio.gather(second.close(), third.close())
        await _until(lambda: _healthy(http, url), 60)


def test_two_sessions_at_once_on_one_batched_front_end_and_a_third_waits(tmp_path: Path) -> None:
    server = start_server(tmp_path / "logs", "--max-sessions", "2", "--max-queue", "1")
    try:
        asyncio.run(_scenario(server.url))
    finally:
        assert server.terminate() == 0
    logs = server.sessions()
    assert len(logs) == 3
    ended = [line for line in server.stderr if "ended:" in line]
    assert len(ended) == 3 and all(" steps" in line for line in ended)


def test_max_sessions_below_one_is_one_line_exit_2() -> None:
    from tests.serve.test_serve_errors import _refused

    assert "--max-sessions must be >= 1" in _refused("--max-sessions", "0")
