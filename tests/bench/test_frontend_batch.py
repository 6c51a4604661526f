"""`kame bench frontend --batch N --json`: batch 1 and batch N measured in one run, one JSON object."""

from __future__ import annotations

import json
import math

from tests.session.conftest import run_kame


def test_frontend_bench_batch_json() -> None:
    args = ("--batch", "3", "--steps", "8", "--rounds", "2", "--warmup", "2", "--realtime", "1", "--json")
    done = run_kame("bench", "frontend", *args, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, done.stdout
    figures = json.loads(lines[0])
    assert figures["batch"] == 3 and figures["label"].startswith("random:tiny")
    assert figures["steps"] >= 4
    for name in ("b1", "b3"):
        assert 0 < figures[f"{name}_p50_ms"] <= figures[f"{name}_p99_ms"], name
    ratio = figures["step_ratio_vs_b1"]
    assert math.isclose(ratio, figures["b3_p50_ms"] / figures["b1_p50_ms"], rel_tol=1e-2)
    assert math.isclose(figures["per_session_p50_ms"], figures["b3_p50_ms"] / 3, rel_tol=1e-2)
    assert "batched front-end bench:" in done.stderr and "batch 3" in done.stderr
    # Then three clients paced in real time for a second: per-client gaps, the process's CPU.
    assert 0.7 <= figures["realtime_seconds"] < 5
    assert len(figures["late_frames"]) == len(figures["dropped_frames"]) == 3
    assert figures["audio_gaps"] == sum(figures["late_frames"]) + sum(figures["dropped_frames"])
    assert figures["held_realtime"] == (
        figures["audio_gaps"] == 0 and figures["realtime_deadline_misses"] == 0
    )
    assert figures["cpu_per_session_pct"] > 0 and figures["realtime_step_p99_ms"] > 0
    assert "3 paced clients" in done.stderr
