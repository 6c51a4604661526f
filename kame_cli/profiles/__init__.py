"""Profiles: TOML files that describe a whole kame setup, parsed into frozen config types.

The names below are imported on first use: `kame --help` loads `profiles.cli`, which must not pull
in the config types (and pydantic) to print a help text.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kame_cli.profiles.profile import (
        DEFAULT_PROFILE,
        Profile,
        ProfileEntry,
        list_profiles,
        load_profile,
        shipped_profiles_dir,
        user_profiles_dir,
    )
    from kame_cli.profiles.runtime import check_environment, check_profile, prepare_llm_backend

_HOMES = {
    "DEFAULT_PROFILE": "profile",
    "Profile": "profile",
    "ProfileEntry": "profile",
    "list_profiles": "profile",
    "load_profile": "profile",
    "shipped_profiles_dir": "profile",
    "user_profiles_dir": "profile",
    "check_environment": "runtime",
    "check_profile": "runtime",
    "prepare_llm_backend": "runtime",
}

__all__ = [
    "DEFAULT_PROFILE",
    "Profile",
    "ProfileEntry",
    "check_environment",
    "check_profile",
    "list_profiles",
    "load_profile",
    "prepare_llm_backend",
    "shipped_profiles_dir",
    "user_profiles_dir",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
