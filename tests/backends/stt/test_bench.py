"""`kame bench stt` as a user runs it: a directory of clips, one JSON object on stdout."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.session.conftest import run_kame
from tests.support.speech import speak

KEYS = (
    "wer_stream",
    "wer_offline",
    "duplicated_words",
    "commit_lag_p50_s",
    "commit_lag_p95_s",
    "final_after_speech_end_p50_s",
    "rtf",
    "decodes_skipped",
)


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    return run_kame("bench", "stt", *args, timeout=300)


def test_bench_scores_streaming_against_offline_in_one_json_object(tmp_path) -> None:
    text = "How many legs does a spider have?"
    speak(text, tmp_path / "spider.wav")
    (tmp_path / "spider.txt").write_text(text)
    run = _bench("--audio-dir", str(tmp_path), "--fast", "--json")
    assert run.returncode == 0, run.stderr
    figures = json.loads(run.stdout)
    assert set(KEYS) <= set(figures)
    assert figures["clips"] == 1 and figures["words"] == 7 and figures["paced"] is False
    assert figures["wer_stream"] <= 0.15 and figures["wer_offline"] <= 0.15
    assert figures["duplicated_words"] == 0 and figures["decodes_skipped"] == 0
    assert figures["commit_lag_p50_s"] is not None
    assert figures["final_after_speech_end_p50_s"] is None, "not measured when fed as fast as possible"
    assert "spider" in figures["per_clip"][0]["stream"].lower()


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--audio-dir", "/nonexistent/clips"], "--audio-dir"),
        (["--set", "step_s=0"], "--set"),
        (["--set", "colour=red"], "--set"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, names) -> None:
    run = _bench(*args, "--fast", "--json")
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and names in lines[0] and "Traceback" not in run.stderr
    assert run.stdout == ""
