"""`kame bench frontend` and `kame bench oracle` with `--json`: one JSON object on stdout, the
human table on stderr, every figure a finite number from a real run (the other benches are tested
beside their areas)."""

from __future__ import annotations

import json
import math

from tests.session.conftest import run_kame


def _one_object(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.strip()]
    assert len(lines) == 1, stdout
    return json.loads(lines[0])


def test_frontend_bench_json() -> None:
    args = ("--steps", "8", "--rounds", "1", "--warmup", "2", "--json")
    done = run_kame("bench", "frontend", *args, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    figures = _one_object(done.stdout)
    assert figures["steps"] >= 7 and figures["label"].startswith("random:tiny")
    for key in ("bare_p50_ms", "engine_p50_ms", "engine_p99_ms", "lm_p50_ms", "overhead_pct"):
        assert math.isfinite(figures[key]), key
    assert 0 < figures["engine_p50_ms"] <= figures["engine_p99_ms"]
    assert isinstance(figures["deadline_misses"], int)
    assert "front-end bench:" in done.stderr and "kame engine" in done.stderr


def test_oracle_bench_json() -> None:
    args = ("--runs", "2", "--warmup", "0", "--max-tokens", "4", "--json")
    done = run_kame("bench", "oracle", *args, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    figures = _one_object(done.stdout)
    assert figures["runs"] == 2 and "smollm2" in figures["target"]
    for path in ("direct_ttft", "litellm_ttft", "producer_request_ttft", "producer_partial_to_append"):
        assert 0 < figures[f"{path}_p50_ms"] <= figures[f"{path}_p99_ms"], path
    assert math.isfinite(figures["litellm_overhead_pct"])
    assert len(figures["load_before"]) == 3
    assert "oracle bench:" in done.stderr and "LiteLLM overhead" in done.stderr
