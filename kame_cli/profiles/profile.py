"""Profiles: one TOML file describes a whole setup (LLM, prompt, restart policy, STT, front-end).

Shipped profiles live in the repository's `profiles/` (a wheel installs them as data files under
`share/kame/profiles`); user profiles in `$KAME_CONFIG_DIR/profiles` (default: the platform's config
directory for kame) override shipped ones by name.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import tomllib
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import kame_cli
from kame_cli.audio_io.config import AudioConfig
from kame_cli.backends.oracle.config import (
    BUNDLED_GGUF,
    LlmConfig,
    PolicyConfig,
    PromptConfig,
    redact_userinfo,
)
from kame_cli.backends.stt.config import SttConfig
from kame_cli.backends.tools.config import ToolServerConfig
from kame_cli.engine.config import FrontendConfig
from kame_cli.errors import ProfileError
from kame_cli.knowledge.config import KnowledgeConfig
from kame_cli.profiles.schema import (
    MAX_FILE_BYTES,
    SchemaError,
    build,
    check_limits,
    dump,
    printable,
    profile_error,
    show_key,
    show_value,
)

DEFAULT_PROFILE = "ollama"
_DISTRIBUTION = "kame-cli"
_DATA_SUBDIR = ("share", "kame", "profiles")
"""Where a wheel installs `profiles/*.toml` (setuptools data-files), under the install prefix."""
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

Source = Literal["shipped", "user", "file"]


@dataclass(frozen=True, slots=True)
class Profile:
    """A parsed, validated profile; each table is a frozen dataclass with every default filled in."""

    name: str
    path: Path
    source: Source
    description: str
    llm: LlmConfig
    prompt: PromptConfig
    policy: PolicyConfig
    stt: SttConfig
    frontend: FrontendConfig
    audio: AudioConfig  # [aec] `[audio]`: echo cancellation, noise suppression, high-pass
    knowledge: KnowledgeConfig  # [knowledge] the user's documents behind the oracle
    tools: tuple[ToolServerConfig, ...] = ()  # [tools] `[[tools]]`: MCP servers the LLM may call

    @property
    def shown_path(self) -> str:
        """The file's path as error messages show it (relative to the working directory if inside)."""
        return display_path(self.path)

    def to_tables(self) -> dict[str, Any]:
        """The profile as TOML tables (defaults included), ready for `schema.to_toml`."""
        tables: dict[str, Any] = {"description": self.description}
        for section in section_types():
            tables[section] = dump(getattr(self, section))
        # A URL may carry a password (`https://user:pass@host`): never print it.
        if isinstance(api_base := tables["llm"].get("api_base"), str):
            tables["llm"]["api_base"] = redact_userinfo(api_base)
        if self.tools:
            tables["tools"] = [dump(server) for server in self.tools]
        return tables


def section_types() -> dict[str, type]:
    """Profile tables and the dataclass each one is read into, from `Profile`'s own type hints."""
    hints = typing.get_type_hints(Profile)
    return {
        f.name: hints[f.name]
        for f in dataclasses.fields(Profile)
        if dataclasses.is_dataclass(hints[f.name]) and isinstance(hints[f.name], type)
    }


def array_section_types() -> dict[str, type]:
    """Profile arrays of tables (`[[tools]]`) and the dataclass each entry is read into."""
    return {"tools": ToolServerConfig}


def display_path(path: Path) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return str(path)
    return rel if not rel.startswith("..") else str(path)


def shipped_profiles_dir() -> Path:
    """Where the shipped profiles are: the checkout's `profiles/` (source tree, editable install),
    else the copy a wheel installed as data files (`<prefix>/share/kame/profiles`)."""
    checkout = Path(kame_cli.__file__).resolve().parent.parent
    # pyproject.toml marks a source tree: beside an installed package, `profiles/` could be anyone's.
    if (checkout / "pyproject.toml").is_file() and (checkout / "profiles").is_dir():
        return checkout / "profiles"
    installed = installed_profiles_dir()
    if installed is not None:
        return installed
    return checkout / "profiles"  # not there either: listing shows none, a name lookup says so


def installed_profiles_dir() -> Path | None:
    """The `share/kame/profiles` folder the installed distribution recorded, wherever the scheme put
    it (a venv, `--user`, `--prefix`)."""
    from importlib import metadata

    try:
        files = metadata.distribution(_DISTRIBUTION).files or []
    except metadata.PackageNotFoundError:
        return None
    for entry in files:
        if entry.suffix == ".toml" and tuple(entry.parts[-4:-1]) == _DATA_SUBDIR:
            folder = Path(str(entry.locate())).resolve().parent
            if folder.is_dir():
                return folder
    return None


def user_profiles_dir() -> Path:
    """`$KAME_CONFIG_DIR/profiles`, else `profiles` in the platform's config directory for kame."""
    root = os.environ.get("KAME_CONFIG_DIR")
    if not root:
        import typer

        root = typer.get_app_dir("kame")
    return Path(root).expanduser() / "profiles"


@dataclass(frozen=True, slots=True)
class ProfileEntry:
    """A profile file found on disk; `overrides` is set when a user file hides a shipped one."""

    name: str
    path: Path
    source: Source
    overrides: Path | None = None


def list_profiles(user_dir: Path | None = None) -> list[ProfileEntry]:
    """Every profile by name, user ones taking the place of shipped ones with the same name.

    An unreadable user folder is one warning line on stderr; the shipped profiles are still listed.
    """
    shipped = {p.stem: p for p in sorted(shipped_profiles_dir().glob("*.toml"))}
    users_dir = user_dir if user_dir is not None else user_profiles_dir()
    users, problem = _user_files(users_dir)
    if problem is not None:
        _warn_once(problem)
    entries = [ProfileEntry(name, path, "user", shipped.get(name)) for name, path in users.items()]
    entries += [ProfileEntry(name, path, "shipped") for name, path in shipped.items() if name not in users]
    return sorted(entries, key=lambda e: e.name)


def _user_files(directory: Path) -> tuple[dict[str, Path], str | None]:
    """The user profiles by name, and why `directory` could not be read (None if it could, or is absent).

    `Path.glob` would hide a folder it cannot read, and `Path.is_file` raises on one: both are avoided.
    """
    try:
        if not directory.is_dir():
            return {}, None
        with os.scandir(directory) as found:
            names = sorted(e.name for e in found if e.name.endswith(".toml"))
        return {Path(name).stem: directory / name for name in names}, None
    except OSError as err:
        reason = err.strerror or type(err).__name__
        return {}, printable(
            f"user profiles folder {directory} cannot be read ({reason}): fix its permissions "
            f"(chmod u+rx) or point KAME_CONFIG_DIR elsewhere"
        )


_warned: set[str] = set()


def _warn_once(problem: str) -> None:
    # A warning, not an error: the shipped profiles still work without the user's folder.
    if problem not in _warned:
        _warned.add(problem)
        print(f"kame: warning: {problem}; using the shipped profiles", file=sys.stderr)


def find_profile(name_or_path: str | None, user_dir: Path | None = None) -> tuple[str, Path, Source]:
    """Where the profile `name_or_path` lives: a file path, or a name (user dir first, then shipped)."""
    # Only None means the default: an empty `--profile ""` is a mistake, not a wish for the default.
    spec = DEFAULT_PROFILE if name_or_path is None else name_or_path
    if not spec.strip():
        raise ProfileError('--profile "": give a profile name (see `kame profiles list`) or a .toml path')
    if spec.endswith(".toml") or os.sep in spec or "/" in spec:
        path = Path(spec).expanduser()
        if not path.is_file():
            raise ProfileError(
                printable(
                    f"profile file {spec} does not exist: give an existing .toml file or a profile name"
                )
            )
        return path.stem, path, "file"
    if not _NAME.match(spec):
        raise ProfileError(f"bad profile name {show_value(spec)}: use letters, digits, '-', '_' or '.'")
    users_dir = user_dir if user_dir is not None else user_profiles_dir()
    users, problem = _user_files(users_dir)
    if spec in users:
        return spec, users[spec], "user"
    shipped = shipped_profiles_dir() / f"{spec}.toml"
    if shipped.is_file():
        if problem is not None:
            _warn_once(problem)
        return spec, shipped, "shipped"
    if problem is not None:
        raise ProfileError(f"no shipped profile named {show_value(spec)}, and the {problem}")
    known = ", ".join(e.name for e in list_profiles(user_dir)) or "none"
    raise ProfileError(
        printable(
            f"no profile named {spec!r} (known: {known}): see `kame profiles list`, or pass a .toml path"
        )
    )


def load_profile(name_or_path: str | None = None, *, user_dir: Path | None = None) -> Profile:
    """Read and validate a profile by name or path (None: the default, `ollama`); ProfileError if bad."""
    name, path, source = find_profile(name_or_path, user_dir)
    shown = printable(display_path(path))
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_FILE_BYTES + 1)
        if len(raw) > MAX_FILE_BYTES:
            raise ProfileError(
                f"{shown}: larger than {MAX_FILE_BYTES // 1024} kB: a profile holds a few settings, "
                "is this the right file?"
            )
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        reason = printable(" ".join(str(err).split()))
        raise ProfileError(f"{shown}: cannot read the file ({reason})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ProfileError(f"{shown}: invalid TOML: {printable(str(err))}") from None
    except RecursionError:
        # tomllib parses nested arrays and inline tables recursively.
        raise ProfileError(
            f"{shown}: invalid TOML: arrays or inline tables nested too deeply: flatten them"
        ) from None
    return parse_profile(data, name=name, path=path, source=source)


def parse_profile(data: dict[str, Any], *, name: str, path: Path, source: Source) -> Profile:
    """A Profile from TOML data already read from `path` (errors name that file)."""
    shown = display_path(path)
    for key, value in data.items():
        try:
            check_limits(value if isinstance(value, dict) else {key: value})
        except SchemaError as err:
            raise profile_error(shown, key if isinstance(value, dict) else None, err) from None
    sections = section_types()
    description = data.get("description", "")
    if not isinstance(description, str):
        raise profile_error(
            shown, None, SchemaError("description", f"must be a string (got {show_value(description)})")
        )
    if len(description) > 1000:
        raise profile_error(shown, None, SchemaError("description", "at most 1000 characters"))
    arrays = array_section_types()
    for key, value in data.items():
        if key == "description" or key in arrays:
            continue
        if key not in sections:
            known = ", ".join(["description", *(f"[{s}]" for s in sections), *(f"[[{a}]]" for a in arrays)])
            raise profile_error(
                shown, None, SchemaError(show_key(key), f"unknown key or table (known: {known})")
            )
        if not isinstance(value, dict):
            raise profile_error(shown, None, SchemaError(key, f"must be a table ([{key}])"))
    built: dict[str, Any] = {}
    for section, cls in sections.items():
        try:
            built[section] = build(cls, data.get(section, {}))
        except SchemaError as err:
            raise profile_error(shown, section, err) from None
    llm: LlmConfig = built["llm"]
    if llm.server is not None and llm.server.gguf != BUNDLED_GGUF:
        gguf = Path(llm.server.gguf).expanduser()
        if not gguf.is_absolute():
            gguf = (path.parent / gguf).resolve()
        built["llm"] = dataclasses.replace(llm, server=dataclasses.replace(llm.server, gguf=str(gguf)))
    built["knowledge"] = _knowledge_paths(built["knowledge"], path)
    for key, cls in arrays.items():
        built[key] = _build_array(shown, key, cls, data.get(key, []), path.parent)
    return Profile(name=name, path=path, source=source, description=description, **built)


def _knowledge_paths(knowledge: KnowledgeConfig, path: Path) -> KnowledgeConfig:
    # [knowledge] Paths in a profile are relative to its file, wherever kame runs from.
    def resolved(pattern: str) -> str:
        expanded = os.path.expanduser(pattern)
        return expanded if os.path.isabs(expanded) else os.path.join(path.parent.resolve(), expanded)

    return dataclasses.replace(
        knowledge,
        documents=tuple(resolved(p) for p in knowledge.documents),
        index=None if knowledge.index is None else resolved(knowledge.index),
    )


def _build_array(shown: str, key: str, cls: type, value: Any, folder: Path) -> tuple[Any, ...]:
    """The entries of an array of tables (`[[tools]]`), each checked like a table; errors name the
    entry by its position."""
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise profile_error(shown, None, SchemaError(key, f"must be an array of tables ([[{key}]])"))
    entries = []
    for index, item in enumerate(value, start=1):
        try:
            entries.append(build(cls, item))
        except SchemaError as err:
            raise ProfileError(printable(f"{shown}: [[{key}]] #{index}: {err.key}: {err.message}")) from None
    if key == "tools":
        from kame_cli.backends.tools.config import resolve_servers

        return resolve_servers(shown, entries, folder)
    return tuple(entries)
