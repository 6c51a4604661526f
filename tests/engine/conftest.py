"""Tiny checkpoints written once per test session, in both the KAME and the plain Moshi format."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.checkpoints import write_tiny_checkpoint


@pytest.fixture(scope="session")
def kame_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_checkpoint(tmp_path_factory.mktemp("kame-tiny"), kame_format=True, seed=1)


@pytest.fixture(scope="session")
def moshi_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_checkpoint(tmp_path_factory.mktemp("moshi-tiny"), kame_format=False, seed=2)
