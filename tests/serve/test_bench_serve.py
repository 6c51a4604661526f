"""`kame bench serve --json`: one JSON object on stdout, the figures of a real run, the human lines on
stderr."""

from __future__ import annotations

import json
import math
import os

from tests.session.conftest import run_kame


def test_bench_serve_json_has_every_figure_from_a_real_run() -> None:
    done = run_kame("bench", "serve", "--clients", "1", "--seconds", "5", "--json", timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    (line,) = [line for line in done.stdout.splitlines() if line.strip()]
    figures = json.loads(line)
    assert figures["clients"] == 1 and figures["refused"] == 0
    for key in (
        "round_trip_added_ms_p50",
        "round_trip_added_ms_p99",
        "step_p99_ms",
        "step_p99_ratio_vs_local",
    ):
        assert math.isfinite(figures[key]) and figures[key] > 0, key
    assert figures["round_trip_added_ms_p50"] <= figures["round_trip_added_ms_p99"]
    assert len(figures["audio_gaps"]) == 1 and len(figures["connect_to_handshake_ms"]) == 1
    assert isinstance(figures["deadline_misses"], int) and isinstance(figures["late_frames"], int)
    assert "network path adds" in done.stderr
    # The batch's cost: B = N (here 1) over the local B = 1 session, clients that held real time, CPU.
    assert math.isfinite(figures["step_ratio_vs_b1"]) and figures["step_ratio_vs_b1"] > 0
    assert figures["sessions_held"] == sum(1 for g in figures["audio_gaps"] if g == 0)
    assert 0 < figures["cpu_per_session_pct"] < 100 * (os.cpu_count() or 1)
    assert "held real time" in done.stderr
