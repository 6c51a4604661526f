"""What every config type shares: one pydantic configuration and the constraints kame adds to it.

Each area declares its settings once, as a frozen pydantic dataclass
(`@dataclass(frozen=True, slots=True, config=SETTINGS)` from `pydantic.dataclasses`) whose fields
carry their bounds (`Annotated[int, Field(ge=1)]`), their choices (`Literal[...]`) and their
documentation (the docstring under each field). Building one, from a profile or in code, validates
it; `profiles/schema.py` only words the errors and keeps secrets out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Annotated, TypeVar

from pydantic import AfterValidator, ConfigDict

from kame_cli.errors import ConfigError, printable

T = TypeVar("T")

SETTINGS = ConfigDict(
    extra="forbid",
    strict=True,  # TOML has types: "60" is not 60, and 1 is not true
    allow_inf_nan=False,  # no timing or rate is infinite; NaN passes every bound check
    # A setting without its own max_length (names, paths, URLs) is at most this long: a 200 kB model
    # name would otherwise reach a child process's command line and fail there.
    str_max_length=4_096,
    use_attribute_docstrings=True,  # the docstring under a field documents it (docs/profiles.md)
)

INT64_MAX = (1 << 63) - 1
"""The upper bound of an integer setting with no bound of its own: torch and C libraries overflow
past int64."""


def not_blank(value: str) -> str:
    """A string setting that must say something: empty or only spaces is refused."""
    if not value.strip():
        raise ValueError("must not be empty")
    return value


NonEmpty = Annotated[str, AfterValidator(not_blank)]
"""A string that is not empty or only spaces (names, paths, model ids)."""


def override(config: T, flags: Mapping[str, object]) -> T:
    """`config` with command-line values in place of some of its fields (`{"device": "cpu"}`); a value
    the field refuses is a ConfigError naming the flag (`--device tpu: ...`), not a traceback."""
    from pydantic import ValidationError

    try:
        return dataclasses.replace(config, **flags)  # type: ignore[type-var]
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        name = str(first["loc"][0]) if first["loc"] else next(iter(flags))
        problem = (first.get("ctx") or {}).get("error") or first["msg"]
        flag = f"--{name.replace('_', '-')} {printable(str(flags.get(name, '')))}".rstrip()
        raise ConfigError(f"{flag}: {problem}") from None
