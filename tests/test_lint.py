"""The code stays ruff-clean (lint and format) and mypy-clean, as configured in pyproject.toml."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _ruff(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ruff", *args], cwd=ROOT, capture_output=True, text=True)


def test_ruff_lint_is_clean() -> None:
    result = _ruff("check", "--no-cache", ".")
    assert result.returncode == 0, result.stdout[-3000:]


def test_ruff_format_is_clean() -> None:
    result = _ruff("format", "--check", "--no-cache", ".")
    assert result.returncode == 0, result.stdout[-3000:]


def test_mypy_is_clean() -> None:
    from kame_cli.backends.oracle.requant import cache_dir

    # Configured in pyproject's [tool.mypy]. Its incremental cache lives in kame's cache, not in the
    # checkout: a fresh clone then checks in under a second what took ~8 CPU-s cold (mypy validates
    # each entry against the source's hash, so another checkout's entries are reused only where equal).
    command = [sys.executable, "-m", "mypy", "--no-error-summary", "--cache-dir", str(cache_dir() / "mypy")]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-1000:]
