"""TOML tables to frozen dataclasses, driven by the dataclasses' own fields and type hints.

Unknown keys, wrong types and out-of-range values are reported as one line naming the file, the
table and the key. Ranges come from field metadata: `ge`, `gt`, `le`, `lt`, `choices`, `nonempty`,
and `check` (a function returning an error text or None); a `ValueError` raised by a dataclass's
`__post_init__` is reported the same way. Keys that name a credential are refused anywhere, free-form
tables included, and their values are never echoed.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Union

from kame_cli.errors import ProfileError

_SECRET_NAMES = frozenset(
    {"key", "apikey", "token", "secret", "password", "auth", "authorization", "bearer", "cookie"}
)
_SECRET_WORDS = frozenset(
    {"apikey", "secret", "password", "passwd", "authorization", "credential", "credentials"}
)
_SECRET_PHRASES = ("api_key", "access_key", "private_key")
_SECRET_FIX = 'secrets never go in profiles: name the environment variable (api_key_env = "NAME")'


class SchemaError(Exception):
    """A bad value at `key` (dotted, inside the table being read)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


def show_value(value: object) -> str:
    """A short rendering of a TOML value for an error message."""
    text = json.dumps(value, default=str) if not isinstance(value, float) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def describe(hint: Any) -> str:
    """The expected TOML value for a type hint, in words."""
    origin = typing.get_origin(hint)
    if hint is bool:
        return "true or false"
    if hint is int:
        return "an integer"
    if hint is float:
        return "a number"
    if hint in (str, Path):
        return "a string"
    if origin is Literal:
        return "one of " + ", ".join(show_value(a) for a in typing.get_args(hint))
    if origin in (Union, types.UnionType):
        arms = [a for a in typing.get_args(hint) if a is not type(None)]
        return " or ".join(describe(a) for a in arms)
    if dataclasses.is_dataclass(hint) or origin in (dict, Mapping):
        return "a table"
    if origin in (list, tuple):
        return "a list"
    return str(hint)


def convert(value: Any, hint: Any, key: str) -> Any:
    """`value` (as tomllib read it) checked and converted to `hint`, or SchemaError."""
    origin = typing.get_origin(hint)
    if hint is Any or hint is object:
        return value
    if origin in (Union, types.UnionType):
        arms = [a for a in typing.get_args(hint) if a is not type(None)]
        errors: list[SchemaError] = []
        for arm in arms:
            try:
                return convert(value, arm, key)
            except SchemaError as err:
                errors.append(err)
        # A nested table's own error is more useful than "must be a table".
        deep = [e for e in errors if e.key != key]
        if deep:
            raise deep[0]
        raise SchemaError(key, f"must be {describe(hint)} (got {show_value(value)})")
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    elif hint is Path:
        if isinstance(value, str):
            return Path(value)
    elif origin is Literal:
        if value in typing.get_args(hint):
            return value
    elif dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if isinstance(value, dict):
            return build(hint, value, key)
    elif origin in (dict, Mapping):
        if isinstance(value, dict):
            _refuse_secrets(value, key)
            key_hint, value_hint = typing.get_args(hint) or (str, Any)
            return {
                convert(k, key_hint, f"{key}.{k}"): convert(v, value_hint, f"{key}.{k}")
                for k, v in value.items()
            }
    elif origin in (list, tuple):
        if isinstance(value, list):
            args = typing.get_args(hint)
            item_hint = args[0] if args else Any
            items = [convert(v, item_hint, f"{key}[{i}]") for i, v in enumerate(value)]
            return tuple(items) if origin is tuple else items
    else:
        raise SchemaError(key, f"unsupported setting type {hint!r}")
    raise SchemaError(key, f"must be {describe(hint)} (got {show_value(value)})")


def looks_secret(name: str) -> bool:
    """Whether a key names a credential (`api_key`, `x-api-key`, `Authorization`, `client_secret`...).

    Word-wise: `max_tokens`, `stop_token_ids` or `prompt_cache_key` are settings, not secrets.
    """
    normal = "_".join(re.split(r"[^a-z0-9]+", name.lower())).strip("_")
    parts = set(normal.split("_"))
    return (
        normal in _SECRET_NAMES
        or bool(parts & _SECRET_WORDS)
        or normal.endswith("_token")
        or any(phrase in normal for phrase in _SECRET_PHRASES)
    )


def _refuse_secrets(value: Any, key: str) -> None:
    """A free-form table (e.g. `[llm.extra]`, passed to the LLM library as is) holds no credential,
    at any depth: the loader refuses it without echoing the value."""
    if isinstance(value, Mapping):
        for name, inner in value.items():
            inner_key = f"{key}.{name}"
            if looks_secret(str(name)):
                raise SchemaError(inner_key, _SECRET_FIX)
            _refuse_secrets(inner, inner_key)
    elif isinstance(value, list | tuple):
        for i, inner in enumerate(value):
            _refuse_secrets(inner, f"{key}[{i}]")


def _check_range(field: dataclasses.Field[Any], value: Any, key: str) -> None:
    meta = field.metadata
    if value is None:
        return
    bounds = (("ge", ">=", lambda v, b: v >= b), ("gt", ">", lambda v, b: v > b))
    bounds += (("le", "<=", lambda v, b: v <= b), ("lt", "<", lambda v, b: v < b))
    for name, sign, ok in bounds:
        if name in meta and isinstance(value, int | float) and not ok(value, meta[name]):
            raise SchemaError(key, f"must be {sign} {meta[name]} (got {show_value(value)})")
    if "choices" in meta and value not in meta["choices"]:
        known = ", ".join(meta["choices"])
        raise SchemaError(key, f"unknown value {show_value(value)} (known: {known})")
    if meta.get("nonempty") and isinstance(value, str) and not value.strip():
        raise SchemaError(key, "must not be empty")
    check = meta.get("check")
    if check is not None and (problem := check(value)):
        raise SchemaError(key, problem)


def build(cls: type, table: Mapping[str, Any], prefix: str = "") -> Any:
    """An instance of dataclass `cls` from a TOML table; keys are reported as `prefix.key`."""
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for name, value in table.items():
        key = f"{prefix}.{name}" if prefix else name
        field = fields.get(name)
        if field is None:
            if looks_secret(name) or name.lower().endswith(("_key", "_token")):
                raise SchemaError(key, _SECRET_FIX)
            raise SchemaError(key, f"unknown key (known: {', '.join(fields)})")
        converted = convert(value, hints[name], key)
        _check_range(field, converted, key)
        kwargs[name] = converted
    missing = [
        name
        for name, f in fields.items()
        if name not in kwargs
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        key = f"{prefix}.{missing[0]}" if prefix else missing[0]
        raise SchemaError(key, "missing (this key is required)")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as err:
        raise SchemaError(prefix or cls.__name__, str(err)) from None


def dump(instance: Any) -> dict[str, Any]:
    """A dataclass as a TOML-ready table (None values left out: TOML has no null)."""
    out: dict[str, Any] = {}
    for field in dataclasses.fields(instance):
        value = getattr(instance, field.name)
        if value is None:
            continue
        if dataclasses.is_dataclass(value):
            value = dump(value)
        elif isinstance(value, Path):
            value = str(value)
        out[field.name] = value
    return out


def to_toml(tables: Mapping[str, Any]) -> str:
    """TOML text for a mapping of tables (plain values, nested tables, lists of plain values)."""
    lines: list[str] = []
    for name, value in tables.items():
        if not isinstance(value, dict):
            lines.append(f"{_key(name)} = {_value(value)}")
    for name, value in tables.items():
        if isinstance(value, dict):
            _table(lines, name, value)
    return "\n".join(lines).strip() + "\n"


def _table(lines: list[str], name: str, table: Mapping[str, Any]) -> None:
    lines += ["", f"[{name}]"]
    for key, value in table.items():
        if not isinstance(value, dict):
            lines.append(f"{_key(key)} = {_value(value)}")
    for key, value in table.items():
        if isinstance(value, dict) and value:  # an empty table is the default: leave it out
            _table(lines, f"{name}.{_key(key)}", value)


def _key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        if "\n" in value and '"""' not in value:
            return '"""\n' + value.replace("\\", "\\\\") + '"""'
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def profile_error(path: Path | str, section: str | None, err: SchemaError) -> ProfileError:
    """`file: [section] key: problem` as a ProfileError."""
    where = f"[{section}] " if section else ""
    return ProfileError(f"{path}: {where}{err.key}: {err.message}")
