"""The profile's LLM: key variable set (never shown), server reachable, model present, its memory here."""

from __future__ import annotations

from pathlib import Path

from kame_cli.backends.oracle.config import OLLAMA_PROVIDERS
from kame_cli.doctor.memory import LlmMemory
from kame_cli.doctor.report import Check, gib
from kame_cli.profiles.profile import Profile

_TIMEOUT_S = 5.0
_LOOPBACK = ("127.0.0.1", "localhost", "[::1]", "::1")
_CLOUD_BASES = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com/v1",
    "gemini": "https://generativelanguage.googleapis.com/v1beta",
}


def _host(url: str) -> str:
    return url.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]


def check_llm(profile: Profile) -> tuple[list[Check], LlmMemory | None]:
    """The key line (when the profile names a variable) and the server line."""
    from kame_cli.backends.oracle.config import api_key_from_env
    from kame_cli.errors import KameError

    llm = profile.llm
    checks: list[Check] = []
    key: str | None = None
    if llm.api_key_env:
        try:
            key = api_key_from_env(llm)
        except KameError:
            checks.append(
                Check(
                    "llm-key",
                    "fail",
                    f"{llm.api_key_env} is not set",
                    f"export {llm.api_key_env}=... (the key for {llm.provider}), or use a local profile",
                )
            )
        else:
            checks.append(Check("llm-key", "ok", f"{llm.api_key_env} is set (its value is never shown)"))
    if llm.server is not None:
        server_check, memory = _local_child(profile)
    elif llm.provider in OLLAMA_PROVIDERS:
        server_check, memory = _ollama(profile)
    else:
        server_check, memory = _openai_style(profile, key), None
    checks.append(server_check)
    return checks, memory


def _local_child(profile: Profile) -> tuple[Check, LlmMemory | None]:
    import importlib.util

    from kame_cli.backends.oracle.config import BUNDLED_GGUF
    from kame_cli.backends.oracle.local_server import resolve_gguf, serving_gguf
    from kame_cli.errors import KameError

    try:
        gguf = resolve_gguf(profile.llm.server.gguf)  # type: ignore[union-attr]
    except KameError as err:
        return Check("llm", "fail", str(err), "set [llm.server] gguf to a .gguf file"), None
    if not Path(gguf).is_file():
        return Check(
            "llm", "fail", f"GGUF {gguf} does not exist", "set [llm.server] gguf to a .gguf file"
        ), None
    if importlib.util.find_spec("xllamacpp") is None:
        return Check("llm", "fail", "[llm.server] needs xllamacpp", "pip install xllamacpp"), None
    served = serving_gguf(profile.llm.server.gguf, make=False)  # type: ignore[union-attr]
    size = served.stat().st_size
    summary = (
        f"llama.cpp child serves {served.name} ({size / 1e6:.0f} MB) as {profile.llm.model}, "
        "started with the session"
    )
    if served == gguf and profile.llm.server.gguf == BUNDLED_GGUF:  # type: ignore[union-attr]
        from kame_cli.backends.oracle.requant import cache_dir, cache_writable

        if cache_writable():
            summary += "; its Q8_0 copy (faster prompts) is made at the first session, about 10 s"
        else:
            summary += (
                f"; kame's cache {cache_dir()} cannot be written, so it stays Q4_1 (prompts read slower): "
                "set KAME_CACHE_DIR to a writable folder for the faster Q8_0 copy"
            )
    return Check("llm", "ok", summary), LlmMemory(f"llama.cpp {profile.llm.model} {gib(size)}", size, "cpu")


def _ollama(profile: Profile) -> tuple[Check, LlmMemory | None]:
    import httpx
    import ollama

    from kame_cli.backends.oracle.ollama import DEFAULT_OLLAMA_HOST, canonical_model, installed_models
    from kame_cli.errors import KameError

    host = profile.llm.api_base or DEFAULT_OLLAMA_HOST
    wanted = canonical_model(profile.llm.model)
    try:
        models = installed_models(host, _TIMEOUT_S)
    except KameError as err:
        return Check("llm", "fail", str(err).split(": start it")[0], "start it: ollama serve"), None
    if wanted not in {canonical_model(m) for m in models}:
        return Check(
            "llm",
            "fail",
            f"Ollama at {host} answers but has no model {wanted}",
            f"kame profiles check {profile.name} --pull (or ollama pull {profile.llm.model})",
        ), None
    memory = None
    if _host(host) in _LOOPBACK:
        try:
            with ollama.Client(host=host, timeout=_TIMEOUT_S) as client:
                listed = {canonical_model(m.model or ""): int(m.size or 0) for m in client.list().models}
                running = {canonical_model(m.model or ""): int(m.size_vram or 0) for m in client.ps().models}
        except (ConnectionError, httpx.HTTPError, ollama.ResponseError):
            listed, running = {}, {}
        if wanted in running:
            memory = LlmMemory(
                f"Ollama {wanted} loaded ({gib(running[wanted])})", running[wanted], "cuda", True
            )
        elif wanted in listed:
            # Not loaded yet: its weights, plus a fifth for the context cache (estimate).
            estimate = int(listed[wanted] * 1.2)
            memory = LlmMemory(f"Ollama {wanted} ~{gib(estimate)} when loaded", estimate, "cuda")
    return Check("llm", "ok", f"Ollama at {host} answers and has {wanted}"), memory


def _openai_style(profile: Profile, key: str | None) -> Check:
    """GET {base}/models: reachability, and whether the model is listed."""
    import httpx

    from kame_cli.backends.oracle.config import redact_userinfo

    llm = profile.llm
    base = (llm.api_base or _CLOUD_BASES.get(llm.provider, "")).rstrip("/")
    if not base:
        return Check("llm", "warn", f"{llm.litellm_model}: no known endpoint to ask", "try it: kame talk")
    shown = redact_userinfo(base)
    headers: dict[str, str] = {}
    params: dict[str, str] = {}
    if llm.provider == "anthropic":
        headers = {"anthropic-version": "2023-06-01", **({"x-api-key": key} if key else {})}
    elif llm.provider == "gemini":
        params = {"key": key} if key else {}
    elif key:
        headers = {"Authorization": f"Bearer {key}"}
    try:
        reply = httpx.get(f"{base}/models", headers=headers, params=params, timeout=_TIMEOUT_S)
    except httpx.HTTPError as err:  # only the type: a message could hold the URL, and so a key
        return Check(
            "llm",
            "fail",
            f"no server answers at {shown} ({type(err).__name__})",
            "start the server or fix [llm] api_base" if llm.api_base else "check the network",
        )
    if reply.status_code in (401, 403):
        return Check(
            "llm", "fail", f"{shown} refuses the key (HTTP {reply.status_code})", "check the key's value"
        )
    if reply.status_code != 200:
        return Check("llm", "warn", f"{shown} answers HTTP {reply.status_code} to a model listing", None)
    try:
        payload = reply.json()
    except ValueError:
        payload = {}
    entries = payload.get("data") or payload.get("models") or [] if isinstance(payload, dict) else []
    ids = {
        str(e.get("id") or e.get("name") or "").removeprefix("models/")
        for e in entries
        if isinstance(e, dict)
    }
    if llm.model in ids:
        return Check("llm", "ok", f"{shown} answers and lists {llm.model}")
    return Check(
        "llm",
        "warn" if ids else "ok",
        f"{shown} answers; {llm.model} is not in its model list" if ids else f"{shown} answers",
        "check [llm] model against the server's models" if ids else None,
    )
