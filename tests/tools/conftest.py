"""The oracle tests' real tokenizer, shared with the tool tests."""

from tests.backends.oracle.conftest import tokenizer  # noqa: F401 - a session fixture, used by name
