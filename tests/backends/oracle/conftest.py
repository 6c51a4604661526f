"""Fixtures shared by the oracle tests: one real llama.cpp server and one real tokenizer."""

from __future__ import annotations

from typing import Any

import pytest

from tests.backends.oracle.harness import train_tokenizer
from tests.support.llm_server import smollm2  # noqa: F401 - a session fixture, used by name


@pytest.fixture(scope="session")
def tokenizer() -> Any:
    return train_tokenizer()
