"""The LLM server dies mid-session and comes back: the voice never stops, the log tells the story."""

from __future__ import annotations

import signal
from pathlib import Path

import soundfile as sf

from tests.session.conftest import (
    assert_valid_session_files,
    read_complete_events,
    session_started,
    smollm2_profile,
    start_talk,
    wait_for_event,
    wait_until,
    write_wav,
)
from tests.support.llm_server import free_port, smollm2_server
from tests.support.speech import concat, synthesize

FRAME = 1920
QUESTIONS = [
    "Tell me about the moon please.",
    "How far away is the sun from the earth?",
    "What is the tallest mountain in the world?",
    "Which ocean is the largest one on earth?",
]


def _profile(path: Path, port: int) -> Path:
    return smollm2_profile(
        path,
        "a llama.cpp server the test kills and restarts",
        f"http://127.0.0.1:{port}/v1",
        """
max_tokens = 30
timeout_s = 8.0
read_timeout_s = 4.0
[policy]
backoff_initial_s = 0.3
backoff_max_s = 1.5
""",
    )


def _recovery(events: list[dict]) -> int | None:
    """The index of the first `ok` LLM status after a failure that a chunk of an answer follows."""
    llm = [(i, e) for i, e in enumerate(events) if e["type"] == "BackendStatus" and e["component"] == "llm"]
    failure = next((i for i, e in llm if e["state"] in ("error", "degraded")), None)
    if failure is None:
        return None
    recovery = next((i for i, e in llm if i > failure and e["state"] == "ok"), None)
    if recovery is None or not any(e["type"] == "OracleChunk" for e in events[recovery:]):
        return None
    return recovery


def test_server_killed_mid_session_then_back(tmp_path: Path) -> None:
    # Questions with 4 s after each, then a long silence: the failed request is retried through it,
    # so the recovery is waited for as a condition, however slow the CPU, and the session is then
    # stopped with Ctrl-C (the silence only bounds the wait).
    audio = concat([0.4, *[part for q in QUESTIONS for part in (synthesize(q), 4.0)], 40.0])
    wav = write_wav(tmp_path / "questions.wav", audio)
    port = free_port()
    log_dir, out_wav = tmp_path / "log", tmp_path / "out.wav"
    events_path = log_dir / "events.jsonl"
    with smollm2_server(port=port) as first_server:
        process = start_talk(str(_profile(tmp_path / "p.toml", port)), wav, out_wav, log_dir)
        try:
            wait_for_event(events_path, session_started, timeout=120)
            wait_for_event(events_path, lambda e: e["type"] == "OracleChunk", timeout=60)
            first_server.kill()
            wait_for_event(
                events_path,
                lambda e: e["type"] == "BackendStatus" and e["component"] == "llm" and e["state"] != "ok",
                timeout=30,
            )
            with smollm2_server(port=port):
                wait_until(lambda: _recovery(read_complete_events(events_path)) is not None, timeout=60)
                process.send_signal(signal.SIGINT)
                stdout, stderr = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 0, stderr[-2000:]

    events = assert_valid_session_files(log_dir, out_wav)
    recovery = _recovery(events)
    assert recovery is not None, [e for e in events if e["type"] == "BackendStatus"]
    assert any(e["type"] == "OracleFinished" and e["outcome"] == "failed" for e in events), "a failed stream"
    # The voice went on through the outage: every frame was stepped in order, and the output holds
    # one frame per frame heard but those in flight when Ctrl-C came.
    steps = [e["step"] for e in events if e["type"] == "StepTiming"]
    assert steps == list(range(len(steps)))
    heard, spoken = (sf.info(wav).frames // FRAME for wav in (log_dir / "input.wav", out_wav))
    assert 0 <= heard - spoken <= 50, (heard, spoken)
    # ... and while the LLM was down.
    failed_at = next(e["t"] for e in events if e["type"] == "OracleFinished" and e["outcome"] == "failed")
    assert any(e["type"] == "StepTiming" and failed_at < e["t"] < events[recovery]["t"] for e in events)
    assert "llm error" in stdout or "llm degraded" in stdout
