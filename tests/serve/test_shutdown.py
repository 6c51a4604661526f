"""SIGTERM with one session active and one client queued: both are told, the log is complete, exit 0."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path

import aiohttp
import numpy as np
import soundfile as sf

from kame_cli.clock import FRAME_SAMPLES
from kame_cli.serve import protocol
from tests.serve.conftest import start_server, talk_command
from tests.session.conftest import (
    kame_env,
    read_events,
    session_started,
    wait_for_event,
    write_wav,
)


async def _told(ws: aiohttp.ClientWebSocketResponse) -> tuple[list[protocol.Message], int | None]:
    """What the server sent until it closed: the last messages and the close code."""
    errors: list[protocol.Message] = []
    while True:
        message = await ws.receive(10)
        if message.type == aiohttp.WSMsgType.BINARY:
            decoded = protocol.decode(message.data)
            if isinstance(decoded, protocol.Error):
                errors.append(decoded)
        elif message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
            return errors, ws.close_code


def _wait_started(log_dir: Path) -> None:
    (session,) = log_dir.glob("session-*")
    wait_for_event(session / "events.jsonl", session_started, 30)


async def _scenario(url: str, log_dir: Path, terminate) -> tuple[float, tuple, tuple]:  # type: ignore[no-untyped-def]
    async with aiohttp.ClientSession() as http:
        active = await http.ws_connect(f"{url}/api/chat?kame=1")
        first = await active.receive(60)
        assert protocol.decode(first.data) == protocol.Handshake()
        queued = await http.ws_connect(f"{url}/api/chat?kame=1")
        await asyncio.to_thread(_wait_started, log_dir)
        sent = time.monotonic()
        terminate()
        told_active, told_queued = await asyncio.gather(_told(active), _told(queued))
        return sent, told_active, told_queued


def test_sigterm_tells_both_clients_completes_the_log_and_exits_0(tmp_path: Path) -> None:
    server = start_server(tmp_path / "logs", "--max-queue", "1")
    try:
        sent, (active_errors, active_code), (queued_errors, queued_code) = asyncio.run(
            _scenario(server.url, server.log_dir, lambda: server.process.send_signal(signal.SIGTERM))
        )
        code = server.process.wait(timeout=max(0.1, sent + 2.0 - time.monotonic()))
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait(5)
    assert code == 0
    assert active_errors == [protocol.Error("the server is shutting down")] and active_code == 1001
    assert queued_code == 1001 and queued_errors == []
    (session,) = server.sessions()
    events = read_events(session / "events.jsonl")
    assert events[-1]["type"] == "BackendStatus" and events[-1]["message"] == "stopped"
    assert sum(e["type"] == "SessionSummary" for e in events) == 1
    assert "Traceback" not in "".join(server.stderr)


def test_kame_talk_told_the_server_stops_ends_with_one_line_exit_1_and_complete_files(tmp_path: Path) -> None:
    server = start_server(tmp_path / "logs")
    question = write_wav(tmp_path / "long.wav", np.zeros(24_000 * 60, np.float32))
    output, log_dir = tmp_path / "out.wav", tmp_path / "client-log"
    client = subprocess.Popen(
        talk_command(server, question, output, log_dir),
        env=kame_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_event(log_dir / "events.jsonl", lambda e: e["type"] == "StepTiming" and e["step"] >= 10, 60)
        server.process.send_signal(signal.SIGTERM)
        _, stderr = client.communicate(timeout=30)
        assert server.process.wait(10) == 0
    finally:
        for process in (client, server.process):
            if process.poll() is None:
                process.kill()
                process.wait(5)
    assert client.returncode == 1
    (line,) = stderr.strip().splitlines()
    assert line.startswith("kame: error: ") and "the server is shutting down" in line
    assert sf.info(output).frames > 10 * FRAME_SAMPLES  # a valid WAV with what came before the end
    events = read_events(log_dir / "events.jsonl")
    assert any(e["type"] == "StepTiming" for e in events)
