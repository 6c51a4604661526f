"""The setups one evaluation compares: the front-end alone, the tandem per profile, a cascade.

- `frontend`: `kame talk --no-llm`, the Moshi baseline: no oracle, so no oracle score.
- `tandem-<profile>`: `kame talk` with that profile: the front-end fed by the LLM's oracle.
- `cascade-<profile>`: the STT's final transcript of the front-end-only session goes to the
  profile's LLM, whose whole answer is the reply (latency: end of speech -> final -> first token;
  a TTS would add its own time to first audio on top).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from kame_cli.errors import ConfigError

Kind = Literal["frontend", "tandem", "cascade"]
FRONTEND = "frontend"


@dataclass(frozen=True, slots=True)
class Setup:
    """One compared system: its name (a folder in `--out`), its kind, and the profile it runs on."""

    name: str
    kind: Kind
    profile: str
    """Profile name or path as given (for `frontend`: the profile whose front-end and STT run)."""

    @property
    def session(self) -> str | None:
        """The session setup whose log this one reads (a cascade reads the front-end-only one)."""
        if self.kind == "cascade":
            return FRONTEND
        return self.name


def plan_setups(
    profiles: Sequence[tuple[str, str]], *, frontend_only: bool, cascade: bool, tandem: bool = True
) -> list[Setup]:
    """The setups to run, from (spec, name) pairs of the loaded `--profile`s (the first one serves the
    front-end alone and the cascade)."""
    if not profiles:
        raise ConfigError("give at least one --profile")
    first_spec, first_name = profiles[0]
    setups: list[Setup] = []
    if frontend_only:
        setups.append(Setup(FRONTEND, "frontend", first_spec))
    if tandem:
        for spec, name in profiles:
            setup = Setup(f"tandem-{_slug(name)}", "tandem", spec)
            if any(s.name == setup.name for s in setups):
                raise ConfigError(f"--profile {spec}: given twice: name each profile once")
            setups.append(setup)
    if cascade:
        setups.append(Setup(f"cascade-{_slug(first_name)}", "cascade", first_spec))
    if not setups:
        raise ConfigError("nothing to run: give --profile, --frontend-only or --cascade")
    return setups


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "profile"
