"""Helpers for `kame eval` tests: the command in a child process, and a profile for a fake judge."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest


def run_kame(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.update(NO_TORCH_COMPILE="1", HF_HUB_OFFLINE="1", LITELLM_LOCAL_MODEL_COST_MAP="True")
    return subprocess.run(
        [sys.executable, "-m", "kame_cli.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_eval_here(capfd: pytest.CaptureFixture[str], *args: str) -> subprocess.CompletedProcess[str]:
    """`kame eval ARGS` in this interpreter, for runs whose sessions are all cached (only the judge
    runs, over loopback): its exit code and output, as `run_kame` gives them."""
    from kame_cli.cli import run

    capfd.readouterr()
    code = run(["eval", *args])
    out, err = capfd.readouterr()
    return subprocess.CompletedProcess(["kame", "eval", *args], code, out, err)


def eval_here(*args: str) -> subprocess.CompletedProcess[str]:
    """`kame eval ARGS` in this interpreter, its output captured at the Python level (a module-scoped
    fixture has no `capfd`): the sessions are child processes anyway, and the later in-process runs
    then find LiteLLM, faster-whisper and matplotlib already imported."""
    import contextlib
    import io

    from kame_cli.cli import run

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run(["eval", *args])
    return subprocess.CompletedProcess(["kame", "eval", *args], code, out.getvalue(), err.getvalue())


def json_line(stdout: str) -> dict[str, Any]:
    lines = [line for line in stdout.splitlines() if line.strip()]
    assert len(lines) == 1, f"--json must print one line on stdout, got {stdout!r}"
    data = json.loads(lines[0])
    assert isinstance(data, dict)
    return data


def write_questions(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture
def judge_profile(tmp_path: Path) -> Any:
    """A profile whose LLM is an OpenAI-compatible server at `api_base` (a fake judge's)."""

    def make(api_base: str, name: str = "fakejudge") -> Path:
        path = tmp_path / f"{name}.toml"
        path.write_text(
            f'[llm]\nprovider = "openai"\nmodel = "judge"\napi_base = "{api_base}"\n'
            "max_tokens = 40\ntimeout_s = 5.0\nread_timeout_s = 2.0\n",
            encoding="utf-8",
        )
        return path

    return make
