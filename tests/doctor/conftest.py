"""Fixtures for the doctor tests: the real llama.cpp server on loopback."""

from tests.support.llm_server import smollm2  # noqa: F401 - a session fixture, used by name
