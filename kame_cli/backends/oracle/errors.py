"""The oracle back-end's own errors (one-line messages, as every KameError)."""

from __future__ import annotations

from kame_cli.errors import ConfigError, ProfileError


class ApiKeyMissingError(ProfileError):
    """The environment variable a profile's `[llm] api_key_env` names is not set."""


class LlmServerError(ConfigError):
    """The LLM server a profile uses is not there: it does not answer (Ollama, an OpenAI-compatible
    server), or the local llama.cpp server could not start (bad GGUF, no xllamacpp, port taken)."""
