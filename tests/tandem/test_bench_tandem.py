"""`kame bench tandem` end to end: a real offline session, the cascaded client on the same server."""

from __future__ import annotations

import math

from kame_cli.events import OracleChunk, OracleFed
from kame_cli.session.record import read_session
from kame_cli.tandem.measures import informed
from kame_cli.tandem.oracle_trace import trace_generations
from tests.tandem.conftest import QUESTIONS, BenchRun, run_kame


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def test_each_question_has_informed_any_and_cascaded_latency(bench_run: BenchRun) -> None:
    figures = bench_run.figures
    rows = figures["questions"]
    assert [row["label"] for row in rows] == list(QUESTIONS)
    for row in rows:
        assert _finite(row["informed_s"]), row
        assert _finite(row["any_s"]), row
        assert _finite(row["cascaded_s"]), row
        assert row["any_s"] <= row["informed_s"]
        # (c) is the session's own final plus the cascade's first token, both after the speech ended.
        assert row["eos_to_final_s"] > 0 and row["cascade_ttft_s"] > 0
        assert math.isclose(row["cascaded_s"], row["eos_to_final_s"] + row["cascade_ttft_s"], abs_tol=2e-3)
        assert 0.0 <= row["share_after_informed"] <= 1.0
        assert row["restarts"] >= 0 and row["wasted_tokens"] >= 0
        assert row["informed_generation"] in row["generations"]
    for key in (
        "informed_oracle_p50_s",
        "any_oracle_p50_s",
        "cascaded_p50_s",
        "ratio_p50",
        "restarts_per_question",
        "wasted_tokens_per_question",
    ):
        assert _finite(figures[key]), key
    assert math.isclose(
        figures["ratio_p50"], figures["informed_oracle_p50_s"] / figures["cascaded_p50_s"], rel_tol=1e-2
    )
    assert "ratio (a)/(c) p50" in bench_run.stderr  # the human lines go to stderr with --json


def test_every_fed_oracle_token_is_traced_to_its_request(bench_run: BenchRun) -> None:
    record = read_session(bench_run.log_dir)
    generations, start_id = trace_generations(record.events)
    assert start_id is not None
    feeds = record.of_type(OracleFed)
    traced = [g.start_fed for g in generations.values() if g.start_fed is not None]
    traced += [f for g in generations.values() for f in g.fed]
    assert sorted(f.step for f in traced) == sorted(f.step for f in feeds)
    for gen in generations.values():
        if gen.start_fed is None:
            continue
        answer = [i for chunk in gen.chunks if isinstance(chunk, OracleChunk) for i in chunk.token_ids]
        for fed in gen.fed:
            # Token k of an answer is fed at the reset's step + k (KAME's oracle stream).
            assert fed.token_id == answer[fed.step - gen.start_fed.step - 1]


def test_informed_means_the_final_words_were_already_heard() -> None:
    assert informed("What is the capital city of France", "What is the capital city of France?")
    assert informed("so what is the capital of France then", "capital of France.")
    assert not informed("What is the capital city", "What is the capital city of France?")
    assert not informed("France of what", "What is the capital city of France?")
    assert not informed("anything", "")


def test_bad_audio_dir_is_one_line_and_exit_2(tmp_path) -> None:
    done = run_kame("bench", "tandem", "--audio-dir", str(tmp_path / "missing"), "--json", timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "--audio-dir" in done.stderr
    assert done.stdout == ""
