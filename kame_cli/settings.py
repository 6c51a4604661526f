"""What every config type shares: one pydantic configuration, the constraints kame adds to it, and
validation on demand.

Each area declares its settings once, as a frozen dataclass whose fields carry their bounds
(`Annotated[int, Field(ge=1)]`), their choices (`Literal[...]`) and their documentation (the
docstring under each field), with `__pydantic_config__ = SETTINGS`. Built in code, a config is
taken as given (tests and benches set values outside a profile's ranges on purpose); data from
outside (a profile, a command-line flag) goes through `validate`. `profiles/schema.py` only words
the errors and keeps secrets out.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Annotated, Any, TypeVar

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


def validate(cls: type[T], data: Mapping[str, Any]) -> T:
    """An instance of config type `cls` from plain data (TOML's types: tables, lists, strings,
    numbers, booleans), every field checked; raises pydantic's ValidationError.

    Passed as JSON: in strict mode pydantic builds a dataclass from a JSON object, and checks each
    value's JSON type, where from a Python dict it would insist on an instance.
    """
    text = json.dumps(data, allow_nan=True)
    adapter = _ADAPTERS.get(cls)
    if adapter is None:
        from pydantic import TypeAdapter

        adapter = _ADAPTERS[cls] = TypeAdapter(cls)
    result: T = adapter.validate_json(text)
    return result


_ADAPTERS: dict[type, Any] = {}
"""One validator per config type, built on first use (building one takes milliseconds)."""


def override(config: T, flags: Mapping[str, object]) -> T:
    """`config` with command-line values in place of some of its fields (`{"device": "cpu"}`),
    checked as a profile's would be; a value the field refuses is a ConfigError naming the flag
    (`--device tpu: ...`), not a traceback."""
    from pydantic import ValidationError

    assert dataclasses.is_dataclass(config) and not isinstance(config, type)
    table = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    table.update(flags)
    try:
        return validate(type(config), _plain(table))
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        name = str(first["loc"][0]) if first["loc"] else next(iter(flags))
        problem = (first.get("ctx") or {}).get("error") or first["msg"]
        flag = f"--{name.replace('_', '-')} {printable(str(flags.get(name, '')))}".rstrip()
        raise ConfigError(f"{flag}: {problem}") from None


def _plain(value: Any) -> Any:
    """A config's values as plain data (nested configs as tables, tuples as lists)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
