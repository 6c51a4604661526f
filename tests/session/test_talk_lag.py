"""The live lag bound: a front-end slowed down on purpose (`--debug-step-delay-ms`) drops the oldest
frames and says so (that `--fast` stays lossless is checked in test_talk_exit_paths)."""

from __future__ import annotations

from pathlib import Path

import soundfile as sf

from tests.session.conftest import assert_valid_session_files, run_kame, stderr_lines, talk_args

FRAME = 1920
MAX_LAG_MS = 240.0  # the [frontend] default


def _talk(wav: Path, tmp: Path, *extra: str) -> tuple[list[dict], Path, str]:
    log_dir, out_wav = tmp / "log", tmp / "out.wav"
    result = run_kame(
        *talk_args("offline", wav, out_wav, log_dir), "--no-llm", "--debug-step-delay-ms", "120", *extra
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert stderr_lines(result.stderr) == []
    return assert_valid_session_files(log_dir, out_wav), out_wav, result.stdout


def test_a_slow_front_end_drops_the_oldest_frames_and_reports_it(question_wav: Path, tmp_path: Path) -> None:
    events, out_wav, stdout = _talk(question_wav, tmp_path)
    drops = [e for e in events if e["type"] == "FramesDropped"]
    assert drops, "120 ms steps against 80 ms frames must fall behind"
    assert sum(e["count"] for e in drops) == drops[-1]["total"]
    assert all(e["lag_ms"] > MAX_LAG_MS for e in drops)
    timings = [e for e in events if e["type"] == "StepTiming"]
    assert max(e["lag_ms"] for e in timings) <= MAX_LAG_MS  # bounded after each drop
    assert all(e["total_ms"] >= 120 for e in timings)
    degraded = [
        e
        for e in events
        if e["type"] == "BackendStatus" and e["component"] == "frontend" and e["state"] == "degraded"
    ]
    assert degraded and "max_lag_ms" in degraded[0]["message"]
    (summary,) = [e for e in events if e["type"] == "SessionSummary"]
    assert summary["dropped_frames"] == drops[-1]["total"]
    input_frames = -(-sf.info(question_wav).frames // FRAME)
    assert len(timings) + summary["dropped_frames"] == input_frames
    # The output keeps the input's timeline: dropped frames are silence, not a shorter file.
    assert sf.info(out_wav).frames == input_frames * FRAME
    assert "frontend degraded: falling behind" in stdout


def test_ctrl_c_while_behind_keeps_every_frame_accounted_for(question_wav: Path, tmp_path: Path) -> None:
    from tests.session.conftest import interrupt, start_talk, wait_for_event

    log_dir, out_wav = tmp_path / "log", tmp_path / "out.wav"
    slow = ("--no-llm", "--debug-step-delay-ms", "120")
    process = start_talk("offline", question_wav, out_wav, log_dir, *slow)
    # Behind by the lag bound: frames are waiting in the loop's queue when the user stops it.
    wait_for_event(log_dir / "events.jsonl", lambda e: e["type"] == "FramesDropped", 120)
    _, stderr = interrupt(process)
    assert process.returncode == 0 and stderr_lines(stderr) == [], stderr[-2000:]
    events = assert_valid_session_files(log_dir, out_wav)
    input_frames = sf.info(log_dir / "input.wav").frames // FRAME
    assert input_frames < -(-sf.info(question_wav).frames // FRAME)  # stopped part-way
    (summary,) = [e for e in events if e["type"] == "SessionSummary"]
    steps = sum(e["type"] == "StepTiming" for e in events)
    # Frames still queued at the stop are counted as dropped, and silence keeps their place.
    assert steps + summary["dropped_frames"] == input_frames
    assert sf.info(out_wav).frames == input_frames * FRAME
