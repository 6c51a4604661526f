"""`kame serve --max-sessions N`: N sessions at once on one batched front-end, then the queue; a
session's back-end killed, or a client beside it that never reads, leaves the other stepping."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest

from kame_cli.serve import protocol
from kame_cli.serve.admission import Admission
from tests.serve.conftest import OWN_PROCESSES, Server, start_server
from tests.serve.test_admission import _check_queued, _first_message, _healthy, _until


@pytest.fixture(scope="module")
def two_slots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One `--max-sessions 2` server for the two-slot tests: a back-end killed in one session, then
    two at once and a third in line (each loaded slot costs a back-end; one server loads them once).
    The kill test comes first: on a fresh pool the first session takes the oldest back-end."""
    running = start_server(
        tmp_path_factory.mktemp("two-slots") / "logs",
        *("--max-sessions", "2", "--max-queue", "1"),
        env=OWN_PROCESSES,
    )
    yield running
    assert running.terminate() == 0


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


def test_max_sessions_below_one_is_one_line_exit_2() -> None:
    from tests.serve.test_serve_errors import _refused

    assert "--max-sessions must be >= 1" in _refused("--max-sessions", "0")


QUESTIONS = {
    "What is the capital city of France?": "capital",
    "How many legs does a spider have?": "spider",
    "What is the tallest mountain on Earth?": "mountain",
}
"""Each client's question, and the word of it that tiny.en must hear in that client's log alone: words
the streaming tiny.en heard from espeak-ng through Opus at every start offset tried (for "Which ocean
is the largest one?" it once wrote "With all shanism, I will just one")."""
HEARD = list(QUESTIONS.values())


def test_three_moshi_clients_at_once_each_log_holds_its_own_question(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    import numpy as np

    from tests.serve.paced_card import PacedSoundCard
    from tests.serve.test_clients import health
    from tests.session.conftest import kame_env, read_events, session_started, wait_for_event, wait_until
    from tests.support.speech import synthesize

    server = start_server(tmp_path / "logs", "--max-sessions", "3", "--max-queue", "1")
    cards, clients, logs = [], [], []
    try:
        wait_until(lambda: health(server) == 200, 60)
        for index in range(3):
            before = set(server.sessions())
            (tmp_path / f"card{index}").mkdir()
            card = PacedSoundCard(tmp_path / f"card{index}")
            card.start()
            cards.append(card)
            clients.append(
                subprocess.Popen(
                    [sys.executable, "-m", "moshi.client", "--host", "127.0.0.1", "--port", str(server.port)],
                    env={**kame_env(), **card.env()},
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            wait_until(lambda before=before: set(server.sessions()) - before, 60)
            (log_dir,) = set(server.sessions()) - before
            logs.append(log_dir / "events.jsonl")
            wait_for_event(logs[-1], session_started, 60)
        # A fourth client waits: every slot is taken.
        assert health(server) == 503
        # All three speak at once, each its own question.
        for card, question in zip(cards, QUESTIONS, strict=True):
            card.say(np.concatenate([synthesize(question), np.zeros(24_000 * 3, np.float32)]))
        for events in logs:
            wait_for_event(events, lambda e: e["type"] == "FinalTranscript", 90)
            wait_for_event(events, lambda e: e["type"] == "OracleChunk", 90)
    finally:
        for client in clients:
            client.send_signal(signal.SIGINT)
        for client in clients:
            try:
                client.wait(10)
            except subprocess.TimeoutExpired:
                client.kill()
                client.wait(5)
        for card in cards:
            card.stop()
        server.terminate()
    for index, events in enumerate(logs):
        finals = " ".join(e["text"].lower() for e in read_events(events) if e["type"] == "FinalTranscript")
        others = [word for other, word in enumerate(HEARD) if other != index]
        assert HEARD[index] in finals and not any(word in finals for word in others), finals


async def _outputs(
    ws: aiohttp.ClientWebSocketResponse, count: int, until_error: bool = False
) -> tuple[list[int], list[object]]:
    """The next `count` output step indices (or fewer: until a back-end error, with `until_error`),
    and the back-end statuses seen meanwhile."""
    from kame_cli.events import BackendStatus
    from kame_cli.serve import metadata

    indices: list[int] = []
    statuses: list[object] = []
    while len(indices) < count:
        if until_error and any(getattr(s, "state", None) == "error" for s in statuses):
            break
        message = protocol.decode((await ws.receive(30)).data)
        if isinstance(message, protocol.Metadata):
            if message.data.get("type") == "Output":
                indices.append(int(message.data["index"]))
            elif isinstance(info := metadata.from_json(message.data), BackendStatus):
                statuses.append(info)
    return indices, statuses


async def _kill_one_backend(url: str, pid: int) -> tuple[list[object], list[int], list[object]]:
    import signal

    from tests.serve.test_faults import _children

    async with aiohttp.ClientSession() as http:
        first = await http.ws_connect(f"{url}/api/chat?kame=1")
        assert isinstance(await _first_message(first, 60), protocol.Handshake)
        second = await http.ws_connect(f"{url}/api/chat?kame=1")
        assert isinstance(await _first_message(second, 60), protocol.Handshake)
        await asyncio.gather(_outputs(first, 5), _outputs(second, 5))
        # The oldest back-end is the first session's (the newest is the spare, loaded ahead).
        _children(pid, "kame-backend")[0].send_signal(signal.SIGKILL)
        (_, told), (steps, others) = await asyncio.gather(
            # Up to 40 s of steps for the death to be told: on a loaded CPU noticing it can take seconds.
            _outputs(first, 500, until_error=True),
            _outputs(second, 40),
        )
        await asyncio.gather(first.close(), second.close())
        return told, steps, others


def test_one_sessions_backend_killed_leaves_the_other_stepping_with_no_gap(two_slots: Server) -> None:
    from kame_cli.events import BackendStatus

    told, steps, others = asyncio.run(_kill_one_backend(two_slots.url, two_slots.process.pid))
    assert any(
        isinstance(s, BackendStatus) and s.component == "backend" and s.state == "error" for s in told
    ), (told, others)
    # The other session: every step in order, none missing, and no fault of its own.
    assert steps == list(range(steps[0], steps[0] + 40))
    assert not any(isinstance(s, BackendStatus) and s.state == "error" for s in others)


def test_two_sessions_at_once_on_one_batched_front_end_and_a_third_waits(two_slots: Server) -> None:
    from tests.session.conftest import wait_until

    before = set(two_slots.sessions())
    asyncio.run(_scenario(two_slots.url))
    ids = [log.name.rsplit("-", 1)[1] for log in set(two_slots.sessions()) - before]
    assert len(ids) == 3

    def ended() -> list[str]:
        return [line for line in two_slots.stderr for sid in ids if f"session {sid} ended:" in line]

    # Its own sessions' lines (an earlier test's may still come): the reader thread may lag the server.
    wait_until(lambda: len(ended()) == 3, 30)
    assert all(" steps" in line for line in ended())


def test_a_client_that_never_reads_beside_a_session_is_dropped_and_the_session_goes_on(
    two_slots: Server,
) -> None:
    """Two slots: the never-reading client holds a real session beside the well-behaved one, so the
    server does send it output, and must drop it rather than buffer what it never takes."""
    import threading

    import psutil

    from kame_cli.clock import FRAME_SAMPLES
    from tests.serve.test_hostile import WellBehaved, _health, _metric, _never_reads
    from tests.session.conftest import read_events, wait_for_event, wait_until

    server = two_slots
    wait_until(lambda: asyncio.run(_health(server.url)) == 200, 60)
    before = set(server.sessions())
    process = psutil.Process(server.process.pid)

    async def scenario() -> tuple[WellBehaved, int, int]:
        well = WellBehaved(server.url)
        # The server's earlier sessions may have dropped a client that stopped reading: count from here.
        slow_before = await _metric(server.url, "kame_slow_clients_total")
        async with aiohttp.ClientSession() as http:
            running = asyncio.create_task(well.run(http))
            await asyncio.wait_for(well.ready.wait(), 60)
            await _until_async(lambda: len(well.indices) >= 5, 60)
            rss_before = peak = process.memory_info().rss
            speaking = threading.Thread(target=_never_reads, args=(server.port, 120.0), daemon=True)
            speaking.start()
            deadline = time.monotonic() + 90
            while await _metric(server.url, "kame_slow_clients_total") <= slow_before:
                assert time.monotonic() < deadline, "the never-reading client was not dropped"
                peak = max(peak, process.memory_info().rss)
                await asyncio.sleep(0.2)
            await asyncio.to_thread(speaking.join, 10)
            assert not speaking.is_alive()  # its connection was dropped: its sends failed
            at_drop = len(well.indices)
            # The session beside it goes on after the drop.
            await _until_async(lambda: len(well.indices) >= at_drop + 25, 60)
            well.done.set()
            await running
        return well, rss_before, peak

    well, rss_before, peak = asyncio.run(scenario())
    # Nothing it never took was kept: the process grew by no more than a session's own state.
    assert peak - rss_before < 16 << 20

    assert not well.closed_early
    assert well.indices == sorted(set(well.indices))
    wait_until(lambda: asyncio.run(_health(server.url)) == 200, 60)
    first, second = sorted(set(server.sessions()) - before, key=lambda p: int(p.name.rsplit("-", 1)[1]))
    wait_for_event(first / "events.jsonl", lambda e: e.get("message") == "stopped", 30)
    events = read_events(first / "events.jsonl")
    steps = sum(e["type"] == "StepTiming" for e in events)
    lag_dropped = sum(e["count"] for e in events if e["type"] == "FramesDropped")
    # Every frame it got was stepped and logged; the steps it did not get are those between its close
    # and the server seeing it (under a second: 12 steps, on a loaded machine).
    assert steps - 12 <= len(well.indices) <= steps
    # No gap: every missing index is one the loop dropped by its lag bound, and the log counts it.
    assert well.indices[-1] + 1 - len(well.indices) <= lag_dropped
    assert well.samples >= (len(well.indices) - 2) * FRAME_SAMPLES
    wait_for_event(second / "events.jsonl", lambda e: e.get("message") == "stopped", 30)
    dropped = read_events(second / "events.jsonl")
    # It was a real session, stepped beside the other, and its log is complete.
    assert any(e["type"] == "StepTiming" for e in dropped)
    assert sum(e["type"] == "SessionSummary" for e in dropped) == 1
    assert server.process.poll() is None


async def _until_async(condition: Callable[[], bool], within: float) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)
