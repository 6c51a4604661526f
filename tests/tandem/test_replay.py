"""`kame replay`: the recorded bench session through two profiles, side by side."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from tests.tandem.conftest import QUESTIONS, BenchRun, run_kame


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_replay_with_a_working_and_an_unreachable_llm(bench_run: BenchRun, tmp_path: Path) -> None:
    down = tmp_path / "down.toml"
    down.write_text(
        'description = "LLM server not running"\n'
        f'[llm]\nprovider = "openai"\nmodel = "smollm2"\napi_base = "http://127.0.0.1:{_closed_port()}/v1"\n'
        '[stt]\nmodel = "tiny.en"\ndevice = "cpu"\n[frontend]\nmodel = "random:tiny"\ndevice = "cpu"\n',
        encoding="utf-8",
    )
    done = run_kame(
        "replay",
        str(bench_run.log_dir),
        "--profile",
        "offline",
        "--profile",
        str(down),
        "--turns",
        "1",  # the first question, and the gap after it: half the recording, the same contrast
        "--json",
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert set(result["profiles"]) == {"offline", "down"}
    turns = result["turns"]
    assert len(turns) == 1 < len(QUESTIONS)
    assert turns[0]["profiles"]["offline"]["final_text"].lower().startswith("what is the capital")
    for turn in turns:
        up, off = turn["profiles"]["offline"], turn["profiles"]["down"]
        # The same audio: both columns heard the user's turn...
        assert up["final_text"] and off["final_text"]
        # ...but only the working LLM answered it, in the voice and for the cascade.
        assert up["oracle_text"] and up["informed_s"] is not None and up["cascaded_s"] is not None
        assert off["oracle_text"] == "" and off["informed_s"] is None and off["any_s"] is None
        assert off["cascaded_s"] is None and "request failed" in off["cascade_note"]
    assert "per user turn" in done.stderr  # the side-by-side table goes to stderr with --json
    assert f"1 of {len(QUESTIONS)} user turns" in done.stderr


def test_replay_needs_a_profile_and_a_session_log(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    from kame_cli.cli import run

    # In this interpreter: refused before anything loads (a `kame` process would only add its imports).
    def refused(*args: str) -> str:
        capfd.readouterr()
        assert run(["replay", str(tmp_path), *args]) == 2
        return capfd.readouterr().err

    stderr = refused("--profile", "offline")
    assert "events.jsonl" in stderr and stderr.strip().count("\n") == 0
    assert "--profile" in refused()
    stderr = refused("--profile", "offline", "--turns", "0")
    assert "--turns" in stderr and stderr.strip().count("\n") == 0
