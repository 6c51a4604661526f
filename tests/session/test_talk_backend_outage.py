"""The LLM server dies mid-session and comes back: the voice never stops, the log tells the story."""

from __future__ import annotations

import time
from pathlib import Path

import soundfile as sf

from tests.session.conftest import (
    cpu_profile,
    read_events,
    session_started,
    start_talk,
    wait_for_event,
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
    return cpu_profile(
        path,
        "a llama.cpp server the test kills and restarts",
        f"""
[llm]
provider = "openai"
model = "smollm2"
api_base = "http://127.0.0.1:{port}/v1"
max_tokens = 30
timeout_s = 8.0
read_timeout_s = 4.0
[policy]
backoff_initial_s = 0.3
backoff_max_s = 1.5
""",
    )


def test_server_killed_mid_session_then_back(tmp_path: Path) -> None:
    # 4 s after each question: its final's request has the time to answer before the next one's
    # words restart it, even on a busy CPU (the first answer must come before the kill, the next
    # after the restart).
    audio = concat([0.4, *[part for q in QUESTIONS for part in (synthesize(q), 4.0)], 2.0])
    wav = write_wav(tmp_path / "questions.wav", audio)
    port = free_port()
    log_dir, out_wav = tmp_path / "log", tmp_path / "out.wav"
    events_path = log_dir / "events.jsonl"
    with smollm2_server(port=port) as first_server:
        process = start_talk(str(_profile(tmp_path / "p.toml", port)), wav, out_wav, log_dir)
        try:
            wait_for_event(events_path, session_started, timeout=120)
            wait_for_event(events_path, lambda e: e["type"] == "OracleChunk", timeout=30)
            first_server.kill()
            wait_for_event(
                events_path,
                lambda e: e["type"] == "BackendStatus" and e["component"] == "llm" and e["state"] != "ok",
                timeout=20,
            )
            time.sleep(1.0)
            with smollm2_server(port=port):
                stdout, stderr = process.communicate(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 0, stderr[-2000:]

    events = read_events(events_path)
    llm = [(i, e) for i, e in enumerate(events) if e["type"] == "BackendStatus" and e["component"] == "llm"]
    failure = next(i for i, e in llm if e["state"] in ("error", "degraded"))
    recovery = next((i for i, e in llm if i > failure and e["state"] == "ok"), None)
    assert recovery is not None, [e for _, e in llm]
    assert any(e["type"] == "OracleChunk" for e in events[recovery:]), "oracle answers again after recovery"
    assert any(e["type"] == "OracleFinished" and e["outcome"] == "failed" for e in events), "a failed stream"
    # The voice went on for the whole file: one output frame per input frame.
    input_frames = -(-len(audio) // FRAME)
    assert abs(sf.info(out_wav).frames - input_frames * FRAME) <= FRAME
    steps = [e["step"] for e in events if e["type"] == "StepTiming"]
    (summary,) = [e for e in events if e["type"] == "SessionSummary"]
    # Every frame was stepped, or dropped by the lag bound if the CPU could not keep up.
    assert steps == list(range(len(steps))) and len(steps) + summary["dropped_frames"] >= input_frames - 1
    assert "llm error" in stdout or "llm degraded" in stdout
