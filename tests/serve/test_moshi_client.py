"""moshi's own Python client, unchanged, talks to `kame serve` through a real-time virtual sound card."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.serve.conftest import Server
from tests.serve.paced_card import PacedSoundCard
from tests.session.conftest import (
    QUESTION,
    kame_env,
    read_events,
    session_started,
    wait_for_event,
    wait_until,
)
from tests.support.speech import synthesize


def test_moshi_client_is_heard_answered_and_plays_the_voice(server: Server, tmp_path: Path) -> None:
    before = set(server.sessions())
    card = PacedSoundCard(tmp_path)
    card.start()
    env = {**kame_env(), **card.env()}
    out, err = (tmp_path / "client.out").open("w"), (tmp_path / "client.err").open("w")
    client = subprocess.Popen(
        [sys.executable, "-m", "moshi.client", "--host", "127.0.0.1", "--port", str(server.port)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=err,
    )
    try:
        wait_until(lambda: set(server.sessions()) - before, 60)
        (log_dir,) = set(server.sessions()) - before
        events = log_dir / "events.jsonl"
        wait_for_event(events, session_started, 60)
        card.say(np.concatenate([synthesize(QUESTION), np.zeros(24_000 * 3, np.float32)]))
        final = wait_for_event(events, lambda e: e["type"] == "FinalTranscript", 60)
        assert "capital" in final["text"].lower()
        wait_for_event(events, lambda e: e["type"] == "OracleChunk", 60)
        # The voice came back over the network and was played by the client's speaker stream.
        wait_until(lambda: float(np.abs(card.played()).max(initial=0.0)) > 1e-3, 30)
    finally:
        client.send_signal(signal.SIGINT)
        try:
            client.wait(10)
        except subprocess.TimeoutExpired:
            client.kill()
            client.wait(5)
        card.stop()
        out.close()
        err.close()
    said = (tmp_path / "client.err").read_text() + (tmp_path / "client.out").read_text()
    assert "connected!" in said
    assert "unknown message kind" not in said
    # The client left: its session's log is complete.
    wait_for_event(events, lambda e: e["type"] == "BackendStatus" and e["message"] == "stopped", 10)
    recorded = read_events(events)
    assert [e["type"] for e in recorded].count("SessionSummary") == 1
    assert (log_dir / "input.wav").stat().st_size > 44 and (log_dir / "output.wav").stat().st_size > 44
