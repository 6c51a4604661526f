"""Profiles: shipped ones load, user ones override by name, `show` round-trips, the loader is generic."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import httpx
import psutil
import pytest
from pydantic import Field

from kame_cli.backends.stt.config import SttConfig
from kame_cli.cli import run
from kame_cli.engine.config import FrontendConfig
from kame_cli.profiles import (
    check_profile,
    list_profiles,
    load_profile,
    prepare_llm_backend,
    shipped_profiles_dir,
)
from kame_cli.profiles.profile import parse_profile, tomllib
from kame_cli.profiles.schema import SchemaError, build, to_toml
from kame_cli.settings import SETTINGS

SHIPPED = ["anthropic", "gemini", "offline", "ollama", "openai", "openai-compatible", "openai-nano"]


@pytest.fixture(autouse=True)
def _empty_user_dir(tmp_path, monkeypatch) -> Path:
    # Every test sees an empty user config dir unless it writes one.
    monkeypatch.setenv("KAME_CONFIG_DIR", str(tmp_path / "config"))
    return tmp_path / "config"


def test_shipped_profiles_all_load() -> None:
    assert sorted(p.stem for p in shipped_profiles_dir().glob("*.toml")) == SHIPPED
    models = {name: load_profile(name).llm.litellm_model for name in SHIPPED}
    assert models["openai-nano"] == "openai/gpt-4.1-nano" and models["openai"] == "openai/gpt-4.1"
    assert models["ollama"].startswith("ollama_chat/")
    default = load_profile()
    assert default.name == "ollama" and default.llm.api_key_env is None
    offline = load_profile("offline")
    assert offline.llm.server is not None and offline.llm.server.threads == 1
    assert (offline.stt.model, offline.stt.device) == ("tiny.en", "cpu")
    assert (offline.frontend.model, offline.frontend.device) == ("random:tiny", "cpu")
    assert offline.policy.poll_interval_s == 0.5 and offline.policy.max_restarts == 5
    for name in ["openai", "openai-nano", "anthropic", "gemini"]:
        assert load_profile(name).llm.api_key_env, f"{name} must name its key's environment variable"


def test_user_profile_overrides_shipped_by_name(_empty_user_dir, capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # Rich would wrap the table at 80 columns
    users = _empty_user_dir / "profiles"
    users.mkdir(parents=True)
    (users / "offline.toml").write_text('description = "mine"\n[llm]\nprovider = "openai"\nmodel = "m"\n')
    (users / "extra.toml").write_text('[llm]\nprovider = "ollama_chat"\nmodel = "qwen2.5:0.5b"\n')
    profile = load_profile("offline")
    assert (profile.source, profile.description, profile.path) == ("user", "mine", users / "offline.toml")
    entries = {e.name: e for e in list_profiles()}
    assert entries["offline"].overrides == shipped_profiles_dir() / "offline.toml"
    assert entries["extra"].source == "user" and entries["ollama"].source == "shipped"
    assert run(["profiles", "list"]) == 0
    out = capsys.readouterr().out
    assert "overrides shipped" in out and "ollama_chat/qwen2.5:0.5b" in out and "extra" in out


def test_profile_by_path_and_unknown_name(tmp_path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(
        '[llm]\nprovider = "gemini"\nmodel = "gemini-2.5-flash"\napi_key_env = "GEMINI_API_KEY"\n'
    )
    profile = load_profile(str(path))
    assert (profile.name, profile.source, profile.llm.litellm_model) == (
        "mine",
        "file",
        "gemini/gemini-2.5-flash",
    )
    assert profile.prompt.system and profile.policy.min_new_words == 2  # defaults filled in
    with pytest.raises(Exception, match=r"no profile named 'nope' \(known: anthropic, gemini, offline"):
        load_profile("nope")


@pytest.mark.parametrize("name", SHIPPED)
def test_show_prints_toml_that_loads_back_to_the_same_profile(name, capsys) -> None:
    assert run(["profiles", "show", name]) == 0
    out = capsys.readouterr().out
    profile = load_profile(name)
    again = parse_profile(tomllib.loads(out), name=profile.name, path=profile.path, source=profile.source)
    assert again == profile


def test_gguf_path_is_relative_to_the_profile_file(tmp_path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "tiny.gguf").write_bytes(b"GGUF")
    path = tmp_path / "local.toml"
    path.write_text('[llm]\nprovider = "openai"\nmodel = "tiny"\n[llm.server]\ngguf = "models/tiny.gguf"\n')
    profile = load_profile(str(path))
    assert profile.llm.server is not None and profile.llm.server.gguf == str(
        tmp_path / "models" / "tiny.gguf"
    )
    assert any("tiny.gguf exists" in line for line in check_profile(profile))


def test_offline_profile_starts_and_stops_its_local_server() -> None:
    profile = load_profile("offline")
    assert any("SmolLM2" in line for line in check_profile(profile))

    def llama_children() -> dict[int, list[str]]:
        return {
            p.pid: p.cmdline() for p in psutil.Process().children() if "llama_child" in " ".join(p.cmdline())
        }

    before = llama_children()  # another test's server may run in this worker
    with prepare_llm_backend(profile) as api_base:
        assert api_base is not None and api_base.startswith("http://127.0.0.1:") and api_base.endswith("/v1")
        models = httpx.get(f"{api_base}/models", timeout=5.0).json()
        assert profile.llm.model in [m["id"] for m in models["data"]]
        # Its prompt cache is bounded (llama.cpp's own default grows the server by gigabytes).
        assert profile.llm.server is not None and profile.llm.server.cache_ram_mib == 256
        (cmdline,) = [c for pid, c in llama_children().items() if pid not in before]
        assert "--cache-ram-mib=256" in cmdline
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{api_base}/models", timeout=2.0)


def test_cloud_profile_backend_is_just_its_api_base() -> None:
    with prepare_llm_backend(load_profile("ollama")) as api_base:
        assert api_base == "http://127.0.0.1:11434"


# --- the loader is generic: any config type, any new field ------------------------------------


@dataclass(frozen=True, slots=True)
class _Inner:
    __pydantic_config__ = SETTINGS
    rate: Annotated[float, Field(gt=0)] = 1.0


@dataclass(frozen=True, slots=True)
class _Settings:
    __pydantic_config__ = SETTINGS
    mode: Literal["fast", "slow"] = "fast"
    name: str | None = None
    count: Annotated[int, Field(ge=1, le=9)] = 3
    tags: tuple[str, ...] = ()
    inner: _Inner = field(default_factory=_Inner)

    def __post_init__(self) -> None:
        if self.mode == "slow" and self.count > 5:
            raise ValueError("count: at most 5 in slow mode")


def test_build_converts_and_validates_from_type_hints() -> None:
    built = build(
        _Settings, {"mode": "slow", "name": "x", "count": 4, "tags": ["a", "b"], "inner": {"rate": 2}}
    )
    assert built == _Settings(mode="slow", name="x", count=4, tags=("a", "b"), inner=_Inner(rate=2.0))
    bad = [
        ({"mode": "medium"}, 'mode: must be one of "fast", "slow" (got "medium")'),
        ({"count": 10}, "count: must be <= 9 (got 10)"),
        ({"count": 2.5}, "count: must be an integer (got 2.5)"),
        ({"count": True}, "count: must be an integer (got true)"),
        ({"tags": "a"}, 'tags: must be a list (got "a")'),
        ({"inner": {"rate": 0}}, "inner.rate: must be > 0 (got 0)"),
        ({"inner": {"speed": 1}}, "inner.speed: unknown key (known: rate)"),
        ({"mode": "slow", "count": 7}, "count: at most 5 in slow mode"),
        ({"token": "abc"}, "token: secrets never go in profiles"),
    ]
    for table, message in bad:
        with pytest.raises(SchemaError) as err:
            build(_Settings, table)
        assert str(err.value).startswith(message), (table, str(err.value))


def _sample(hint: object, default: object) -> object:
    if default is not None and default is not dataclasses.MISSING:
        return list(default) if isinstance(default, tuple) else default
    arms = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    origin = typing.get_origin(arms[0])
    if origin is Literal:
        return typing.get_args(arms[0])[0]
    if origin in (list, tuple):
        return []
    if origin is dict:
        return {}
    return {str: "x", int: 1, float: 1.0, bool: True}[arms[0]]  # type: ignore[index]


@pytest.mark.parametrize("cls", [SttConfig, FrontendConfig])
def test_every_field_of_the_stt_and_frontend_tables_can_be_set(cls) -> None:
    # Whatever fields their owners add, a profile can set each of them without loader changes.
    hints = typing.get_type_hints(cls)
    table = {f.name: _sample(hints[f.name], f.default) for f in dataclasses.fields(cls)}
    table = {k: v for k, v in table.items() if v is not None}
    built = build(cls, table)
    for key, value in table.items():
        got = getattr(built, key)
        assert (list(got) if isinstance(got, tuple) else got) == value
    assert tomllib.loads(to_toml({"t": table}))["t"] == table


def test_check_reaches_an_openai_compatible_server_on_loopback(tmp_path, capsys) -> None:
    from tests.support.llm_server import FaultyOpenAI, free_port

    path = tmp_path / "local.toml"
    with FaultyOpenAI() as server:
        path.write_text(f'[llm]\nprovider = "openai"\nmodel = "fake"\napi_base = "{server.api_base}"\n')
        assert run(["profiles", "check", str(path)]) == 0
        assert f"ok: server at {server.api_base} answers (200)" in capsys.readouterr().out
    path.write_text(
        f'[llm]\nprovider = "openai"\nmodel = "fake"\napi_base = "http://127.0.0.1:{free_port()}/v1"\n'
    )
    assert run(["profiles", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "[llm] api_base: no server answers at http://127.0.0.1:" in err


def test_one_api_key_check_for_profiles_and_the_llm_client(tmp_path, monkeypatch) -> None:
    from kame_cli.backends.oracle.config import resolve_api_key
    from kame_cli.backends.oracle.errors import ApiKeyMissingError
    from kame_cli.profiles import check_environment

    monkeypatch.delenv("KAME_TEST_UNSET_KEY", raising=False)
    path = tmp_path / "keyed.toml"
    path.write_text('[llm]\nprovider = "openai"\nmodel = "m"\napi_key_env = "KAME_TEST_UNSET_KEY"\n')
    profile = load_profile(str(path))
    for check in (lambda: check_environment(profile), lambda: resolve_api_key(profile.llm)):
        with pytest.raises(ApiKeyMissingError, match=r"\[llm\] api_key_env: environment variable "):
            check()
    monkeypatch.setenv("KAME_TEST_UNSET_KEY", "the-key")
    assert check_environment(profile) == "KAME_TEST_UNSET_KEY is set"
    assert resolve_api_key(profile.llm) == "the-key"


def test_every_absent_llm_server_is_the_same_error(tmp_path) -> None:
    from kame_cli.backends.oracle.errors import LlmServerError
    from kame_cli.backends.oracle.local_server import LocalLlamaServer
    from tests.support.llm_server import free_port

    port = free_port()
    for provider in ("openai", "ollama_chat"):
        path = tmp_path / f"{provider}.toml"
        path.write_text(
            f'[llm]\nprovider = "{provider}"\nmodel = "m"\napi_base = "http://127.0.0.1:{port}"\n'
        )
        with pytest.raises(LlmServerError, match=f"127.0.0.1:{port}"):
            check_profile(load_profile(str(path)))
    with pytest.raises(LlmServerError, match="does not exist"):
        LocalLlamaServer(tmp_path / "none.gguf", "m").start()


def test_a_wheel_install_finds_the_profiles_it_installed_as_data(tmp_path, monkeypatch) -> None:
    # A wheel built with `[tool.setuptools.data-files]` records its profiles as
    # `../../../share/kame/profiles/*.toml` in RECORD, relative to site-packages.
    from kame_cli.profiles.profile import installed_profiles_dir

    site = tmp_path / "venv" / "lib" / "python3.11" / "site-packages"
    info = site / "kame_cli-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: kame-cli\nVersion: 0.1.0\n")
    shared = tmp_path / "venv" / "share" / "kame" / "profiles"
    shared.mkdir(parents=True)
    (shared / "ollama.toml").write_text('[llm]\nprovider = "ollama_chat"\nmodel = "m"\n')
    (info / "RECORD").write_text(
        "kame_cli-0.1.0.dist-info/METADATA,,\n../../../share/kame/profiles/ollama.toml,,\n"
    )
    assert installed_profiles_dir() != shared  # the editable install records no data files
    monkeypatch.syspath_prepend(str(site))
    assert installed_profiles_dir() == shared.resolve()
