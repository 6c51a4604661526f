"""`kame eval --knowledge`: every tandem whose profile names documents runs twice, with them and
without them, on the same spoken questions, so the table shows what the documents add."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from kame_cli.errors import ConfigError
from kame_cli.eval.setups import Setup

if TYPE_CHECKING:
    from kame_cli.profiles import Profile

SUFFIX = "-no-docs"
PROFILES_FOLDER = "profiles-without-documents"


def pair_with_plain(
    setups: Sequence[Setup], profiles: Mapping[str, Profile], out: Path
) -> tuple[list[Setup], dict[Path, Profile]]:
    """The setups with, after each tandem whose profile has `[knowledge] documents`, its twin on the
    same profile without them; and the profile files those twins need (written by `write_plain`).
    ConfigError if no profile names documents."""
    paired: list[Setup] = []
    files: dict[Path, Profile] = {}
    for setup in setups:
        paired.append(setup)
        profile = profiles.get(setup.profile)
        if setup.kind != "tandem" or profile is None or not profile.knowledge.documents:
            continue
        path = (out / PROFILES_FOLDER / f"{setup.name}{SUFFIX}.toml").resolve()
        files[path] = profile
        paired.append(Setup(f"{setup.name}{SUFFIX}", "tandem", str(path)))
    if not files:
        names = ", ".join(profiles) or "none"
        raise ConfigError(
            f"--knowledge: no --profile names [knowledge] documents (given: {names}): give one that does, "
            "e.g. examples/knowledge/help-desk.toml"
        )
    return paired, files


def write_plain(files: Mapping[Path, Profile]) -> None:
    """Each profile again, every default filled in and every path absolute, without `[knowledge]`."""
    from kame_cli.profiles.schema import to_toml

    for path, profile in files.items():
        tables = profile.to_tables()
        tables.pop("knowledge", None)
        tables["description"] = f"{profile.description} (without its documents, for kame eval --knowledge)"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(to_toml(tables), encoding="utf-8")
