"""What a profile needs before and around a session: checks, and the local LLM server if it has one."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from kame_cli.backends.oracle.config import OLLAMA_PROVIDERS, api_key_from_env
from kame_cli.backends.oracle.errors import LlmServerError
from kame_cli.errors import ProfileError
from kame_cli.profiles.profile import Profile

_LOOPBACK = ("127.0.0.1", "localhost", "[::1]")


def check_environment(profile: Profile) -> str | None:
    """Raise ApiKeyMissingError (a ProfileError) if the key's environment variable is unset.

    On success returns what passed ("NAME is set", or None when the profile needs no key), for
    `kame profiles check` to print; callers that only need the check can ignore it. The key's value
    is never shown.
    """
    from kame_cli.knowledge.session import check_documents

    check_documents(profile.knowledge, profile.shown_path)  # [knowledge] bad paths: before anything loads
    if api_key_from_env(profile.llm, profile.shown_path) is None:
        return None
    return f"{profile.llm.api_key_env} is set"


def check_profile(profile: Profile, *, online: bool = True) -> list[str]:
    """Check what a session with this profile needs; returns what passed, raises the first KameError.

    Always: the API key's variable, the local GGUF. With `online`: an Ollama server and its model,
    and an OpenAI-compatible server on loopback, answer.
    """
    passed: list[str] = []
    if (env := check_environment(profile)) is not None:
        passed.append(env)
    llm = profile.llm
    if llm.server is not None:
        from kame_cli.backends.oracle.local_server import resolve_gguf

        gguf = resolve_gguf(llm.server.gguf)
        if not gguf.is_file():
            raise ProfileError(
                f"{profile.shown_path}: [llm.server] gguf: file {gguf} does not exist: "
                "give the path of a .gguf model"
            )
        passed.append(f"GGUF {gguf} exists ({gguf.stat().st_size / 1e6:.0f} MB)")
        import importlib.util

        if importlib.util.find_spec("xllamacpp") is None:
            raise ProfileError(f"{profile.shown_path}: [llm.server] needs xllamacpp: pip install xllamacpp")
    if profile.tools:
        from kame_cli.backends.tools.check import check_tools

        passed += check_tools(profile.shown_path, profile.tools, online=online)
    if not online:
        return passed
    if llm.provider in OLLAMA_PROVIDERS:
        from kame_cli.backends.oracle.ollama import check_ollama_model

        passed.append(check_ollama_model(llm.api_base, llm.model, profile_name=profile.name))
    elif llm.server is None and llm.api_base and _on_loopback(llm.api_base):
        passed.append(_check_openai_compatible(profile))
    return passed


def _on_loopback(url: str) -> bool:
    host = url.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]
    return host in _LOOPBACK


def _check_openai_compatible(profile: Profile) -> str:
    import httpx

    base = (profile.llm.api_base or "").rstrip("/")
    try:
        reply = httpx.get(f"{base}/models", timeout=3.0)
    except httpx.HTTPError as err:
        raise LlmServerError(
            f"{profile.shown_path}: [llm] api_base: no server answers at {base} ({type(err).__name__}): "
            "start it or fix api_base"
        ) from None
    return f"server at {base} answers ({reply.status_code})"


@contextlib.contextmanager
def prepare_llm_backend(profile: Profile) -> Iterator[str | None]:
    """Start what the profile's LLM needs (the local llama.cpp server, if any); yields the api_base.

    The local server is stopped (terminate, then kill) when the block exits.
    """
    llm = profile.llm
    if llm.server is None:
        yield llm.api_base
        return
    from kame_cli.backends.oracle.local_server import LocalLlamaServer, resolve_gguf, serving_gguf

    gguf = resolve_gguf(llm.server.gguf)
    if not Path(gguf).is_file():
        raise ProfileError(f"{profile.shown_path}: [llm.server] gguf: file {gguf} does not exist")
    gguf = serving_gguf(llm.server.gguf)
    server = LocalLlamaServer(
        gguf,
        llm.model,
        threads=llm.server.threads,
        n_ctx=llm.server.n_ctx,
        port=llm.server.port,
        cache_ram_mib=llm.server.cache_ram_mib,
        startup_timeout_s=llm.server.startup_timeout_s,
    )
    with server:
        yield server.api_base
