"""`kame bench oracle` with a `[knowledge]` profile: the producer with and without retrieval in one
run, and what retrieval added, in `--json`."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

from kame_cli.bench.oracle import figures, report, run_oracle_bench

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "knowledge"


def test_one_run_times_the_producer_with_and_without_retrieval(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLE, tmp_path / "example")
    profile = tmp_path / "example" / "help-desk.toml"
    # The index beside the copy, not in the user's cache (which keeps the served GGUF's Q8_0 copy).
    text = profile.read_text(encoding="utf-8").replace(
        "[knowledge]\n", '[knowledge]\nindex = "index.sqlite"\n'
    )
    profile.write_text(text, encoding="utf-8")
    result = run_oracle_bench(str(profile), runs=1, warmup=0, max_tokens=1)
    assert (tmp_path / "example" / "index.sqlite").is_file()
    out = figures(result)
    assert out["runs"] == 1 and len(result.informed_ms) == len(result.producer_ms) == 1
    assert 0 < out["retrieval_added_ms_p50"] <= out["retrieval_added_ms_p95"]
    assert 0 < out["informed_partial_to_append_p50_ms"] <= out["informed_partial_to_append_p99_ms"]
    assert math.isfinite(out["knowledge_added_ms_p50"])
    assert out["notes_chars_mean"] > 0, "the questions about the documents' sections found no passage"
    assert "retrieval added p50" in report(result)


def test_a_profile_without_knowledge_reports_no_retrieval_figures() -> None:
    from kame_cli.bench.oracle import OracleBenchResult

    plain = OracleBenchResult("t", [100.0, 110.0], [101.0, 111.0], [102.0, 112.0], [90.0, 95.0])
    assert not any(key.startswith(("retrieval", "informed", "knowledge")) for key in figures(plain))
