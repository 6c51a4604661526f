"""Profiles: TOML files that describe a whole kame setup, parsed into frozen dataclasses."""

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
