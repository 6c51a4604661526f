"""Clients of one `kame serve`: moshi's own Python client, unchanged, through a real-time virtual
sound card; `kame talk --server` with files; and a second client waiting for its turn."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from kame_cli.clock import FRAME_SAMPLES
from tests.serve.conftest import Server, talk_command
from tests.serve.paced_card import PacedSoundCard
from tests.session.conftest import (
    QUESTION,
    kame_command,
    kame_env,
    read_events,
    run_kame,
    session_started,
    stop_process,
    wait_for_event,
    wait_until,
    write_wav,
)
from tests.support.speech import synthesize


def test_moshi_client_is_heard_answered_and_plays_the_voice(server: Server, tmp_path: Path) -> None:
    wait_until(lambda: health(server) == 200, 60)
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
        lags = (
            metric(server, "kame_stt_commit_lag_seconds_count"),
            metric(server, "kame_stt_commit_lag_seconds_sum"),
        )
        assert lags[0] >= 1 and 0 < lags[1] / lags[0] < 10  # the STT's commit lag, as /metrics shows it
        # The voice came back over the network and was played by the client's speaker stream.
        wait_until(lambda: float(np.abs(card.played()).max(initial=0.0)) > 1e-3, 30)
    finally:
        stop_process(client, signal.SIGINT)
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


def test_kame_talk_server_with_files_writes_a_full_output_and_a_log_kame_plot_draws(
    server: Server, tmp_path: Path
) -> None:
    wait_until(lambda: health(server) == 200, 60)
    question = write_wav(
        tmp_path / "question.wav", np.concatenate([synthesize(QUESTION), np.zeros(24_000 * 2)])
    )
    output, log_dir = tmp_path / "answer.wav", tmp_path / "log"
    done = subprocess.run(
        talk_command(server, question, output, log_dir),
        env=kame_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    # Full length: one frame of the voice for every frame of the question (the last one padded).
    frames = -(-sf.info(question).frames // FRAME_SAMPLES)
    assert sf.info(output).frames == frames * FRAME_SAMPLES
    assert sf.info(log_dir / "input.wav").frames == frames * FRAME_SAMPLES
    events = read_events(log_dir / "events.jsonl")
    finals = [e["text"] for e in events if e["type"] == "FinalTranscript"]
    assert any("capital" in text.lower() for text in finals)
    assert sum(e["type"] == "StepTiming" for e in events) > 20
    drawn = run_kame("plot", str(log_dir), timeout=120)
    assert drawn.returncode == 0, drawn.stderr
    assert (log_dir / "timeline.png").stat().st_size > 10_000


def test_kame_talk_server_refuses_what_the_server_chose_and_a_bad_url(
    capfd: pytest.CaptureFixture[str],
) -> None:
    from kame_cli.cli import run

    # In this interpreter: both are refused before anything connects or loads.
    for args, says in (
        (["--server", "ftp://host"], "give a URL such as ws://host:8998"),
        (["--server", "ws://127.0.0.1:1", "--model", "random:tiny"], "--model does not apply with --server"),
    ):
        capfd.readouterr()
        assert run(["talk", *args]) == 2
        stderr = capfd.readouterr().err
        assert says in stderr
        assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr


def health(server: Server) -> int:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{server.url}/healthz", timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return err.code


def test_kame_talk_server_with_microphone_and_speaker_is_heard_and_plays(
    server: Server, tmp_path: Path
) -> None:
    # No echo to cancel on the virtual card, and random:tiny's voice is loud noise from the first
    # step: with the canceller on, double talk cuts the question short (here, as in a local session).
    aec = ["--headphones"]
    wait_until(lambda: health(server) == 200, 60)
    card = PacedSoundCard(tmp_path)
    card.start()
    log_dir = tmp_path / "log"
    client = subprocess.Popen(
        kame_command(
            "talk", "--server", f"ws://127.0.0.1:{server.port}", "--log-dir", str(log_dir), "--no-ui", *aec
        ),
        env={**kame_env(), **card.env()},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        events = log_dir / "events.jsonl"
        wait_for_event(events, session_started, 60)
        card.say(np.concatenate([synthesize(QUESTION), np.zeros(24_000 * 3, np.float32)]))
        final = wait_for_event(events, lambda e: e["type"] == "FinalTranscript", 60)
        assert "capital" in final["text"].lower()
        wait_until(lambda: float(np.abs(card.played()).max(initial=0.0)) > 1e-3, 30)
        client.send_signal(signal.SIGINT)
        _, stderr = client.communicate(timeout=20)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait(5)
        card.stop()
    assert client.returncode == 0, stderr
    assert sf.info(log_dir / "input.wav").frames > 24_000 and sf.info(log_dir / "output.wav").frames > 24_000


def metric(server: Server, name: str) -> float:
    import urllib.request

    with urllib.request.urlopen(f"{server.url}/metrics", timeout=10) as response:
        text = response.read().decode()
    return next(float(line.split()[1]) for line in text.splitlines() if line.startswith(name + " "))
