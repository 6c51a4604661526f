"""One real `kame bench tandem` run (offline profile, two espeak-ng questions), shared by every test
here: its JSON, and its session log, which the plot and replay tests read and replay."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.speech import speak

QUESTIONS = ("What is the capital city of France?", "How many legs does a spider have?")
GAP_S = 7.0  # time for an answer even when the CPU is shared (the LLM child runs at niceness 10)


def kame_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(NO_TORCH_COMPILE="1", HF_HUB_OFFLINE="1", LITELLM_LOCAL_MODEL_COST_MAP="True")
    return env


def run_kame(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kame_cli.cli", *args],
        env=kame_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@dataclass(frozen=True)
class BenchRun:
    figures: dict[str, Any]
    log_dir: Path
    stderr: str


@pytest.fixture(scope="session")
def questions_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("questions")
    for i, text in enumerate(QUESTIONS, start=1):
        speak(text, folder / f"q{i}.wav")
        (folder / f"q{i}.txt").write_text(text, encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def bench_run(questions_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> BenchRun:
    logs = tmp_path_factory.mktemp("bench-logs")
    done = run_kame(
        "bench",
        "tandem",
        "--audio-dir",
        str(questions_dir),
        "--profile",
        "offline",
        "--model",
        "random:tiny",
        "--gap",
        str(GAP_S),
        "--log-dir",
        str(logs),
        "--json",
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, f"--json must print one line on stdout, got {done.stdout!r}"
    return BenchRun(json.loads(lines[0]), logs / "offline", done.stderr)
