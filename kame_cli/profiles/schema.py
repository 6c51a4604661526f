"""What profiles add to the config types: limits on the raw TOML, secrets kept out, one-line errors.

The config types (`SttConfig`, `FrontendConfig`, `LlmConfig`, ...) declare their own fields,
bounds, choices and checks, and pydantic validates data against them (see `kame_cli.settings`);
nothing here knows their fields.
This module bounds the TOML data first (`check_limits`: nesting depth, string length, list length),
refuses keys that name a credential anywhere, free-form tables included, without echoing their
values, builds each table into its type (`build`), and words every error as one line naming the
table and the key, with key names and values escaped (a newline or an ANSI escape in a key never
reaches the terminal raw).
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import math
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Union

from kame_cli.errors import ProfileError, printable

_SECRET_NAMES = frozenset(
    {"key", "apikey", "token", "secret", "password", "auth", "authorization", "bearer", "cookie"}
)
_SECRET_WORDS = frozenset(
    {"apikey", "secret", "password", "passwd", "authorization", "credential", "credentials"}
)
_SECRET_PHRASES = ("api_key", "access_key", "private_key")
_SECRET_FIX = 'secrets never go in profiles: name the environment variable (api_key_env = "NAME")'

MAX_FILE_BYTES = 1 << 20
"""A profile is a few kB of settings; a bigger file is a mistake (or an attack), refused unread."""
MAX_DEPTH = 12
"""Tables and lists nested deeper than this are refused (the shipped schema needs 4)."""
MAX_STRING = 65_536
"""No string anywhere in a profile is longer (a long system prompt fits easily)."""
MAX_LIST = 1_000
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


class SchemaError(Exception):
    """A bad value at `key` (dotted, inside the table being read); `key` is already escaped."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


def show_key(name: object) -> str:
    """A key as it appears in a message: bare when it is a plain TOML key, else quoted and escaped."""
    text = str(name)
    return text if _BARE_KEY.match(text) else json.dumps(text)


def show_value(value: object) -> str:
    """A short, escaped rendering of a TOML value for an error message."""
    from kame_cli.backends.oracle.config import looks_like_key

    if isinstance(value, float):
        text = repr(value)
    elif isinstance(value, str):
        if looks_like_key(value):
            return "a value shaped like an API key (not shown)"
        text = json.dumps(value[:60])
    else:
        try:
            text = json.dumps(value, default=str)
        except (ValueError, RecursionError):
            text = f"a {type(value).__name__}"
    return text if len(text) <= 40 else text[:37] + "..."


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


# --- limits on the raw TOML data ------------------------------------------------------------------


def check_limits(data: Mapping[str, Any]) -> None:
    """Refuse data nested too deeply, or holding a huge string or list (SchemaError at the first).

    Iterative on purpose: the data may be nested deeper than Python's recursion limit allows.
    """
    stack: list[tuple[object, str, int]] = [(data, "", 0)]
    while stack:
        value, key, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise SchemaError(key, f"nested more than {MAX_DEPTH} levels deep: flatten it")
        if isinstance(value, datetime.date | datetime.time):
            raise SchemaError(key, "a date or time is no setting: quote it if it is text")
        if isinstance(value, str):
            if len(value) > MAX_STRING:
                raise SchemaError(key, f"{len(value)} characters: at most {MAX_STRING}")
        elif isinstance(value, Mapping):
            for name, inner in value.items():
                if len(str(name)) > 200:
                    raise SchemaError(show_key(str(name)[:40]) + "...", "key longer than 200 characters")
                stack.append((inner, f"{key}.{show_key(name)}" if key else show_key(name), depth + 1))
        elif isinstance(value, list):
            if len(value) > MAX_LIST:
                raise SchemaError(key, f"{len(value)} items: at most {MAX_LIST}")
            stack.extend((inner, f"{key}[{i}]", depth + 1) for i, inner in enumerate(value))


# --- secrets --------------------------------------------------------------------------------------


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
            inner_key = f"{key}.{show_key(name)}"
            if looks_secret(str(name)):
                raise SchemaError(inner_key, _SECRET_FIX)
            _refuse_secrets(inner, inner_key)
    elif isinstance(value, list | tuple):
        for i, inner in enumerate(value):
            _refuse_secrets(inner, f"{key}[{i}]")


# --- building a config type from a table -------------------------------------------------------


def _init_fields(cls: type) -> dict[str, dataclasses.Field[Any]]:
    return {f.name: f for f in dataclasses.fields(cls) if f.init}


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_dataclass_type(hint: Any) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def _scalar_arms(hint: Any) -> set[Any]:
    if typing.get_origin(hint) in (Union, types.UnionType):
        return {a for a in typing.get_args(hint) if a is not type(None)}
    return {hint}


def _table_type(hint: Any) -> type | None:
    """The config type a nested table is read into (`server: LocalServerConfig | None`), if any."""
    tables = [a for a in _scalar_arms(hint) if _is_dataclass_type(a)]
    return tables[0] if tables else None


def build(cls: type, table: Mapping[str, Any], prefix: str = "") -> Any:
    """An instance of config type `cls` from a TOML table, or a SchemaError naming the key as
    `prefix.key`.

    The type validates itself (strict types, bounds, choices, its own checks); this adds what is
    kame's own: credentials refused before any value could be echoed, and every error in one line
    of kame's words.
    """
    from pydantic import ValidationError

    from kame_cli.settings import validate

    if not isinstance(table, Mapping):
        raise SchemaError(prefix or cls.__name__, f"must be a table (got {show_value(table)})")
    _refuse_secret_keys(cls, table, prefix)
    try:
        return validate(cls, table)
    except ValidationError as err:
        errors = sorted(err.errors(include_url=False), key=_error_order)
        raise _schema_error(cls, errors[0], prefix) from None
    except (TypeError, ValueError) as err:  # a value JSON cannot carry (check_limits refuses dates)
        raise SchemaError(prefix or cls.__name__, f"a value of an unexpected kind ({err})") from None


def _join(prefix: str, name: object) -> str:
    return f"{prefix}.{show_key(name)}" if prefix else show_key(name)


def _refuse_secret_keys(cls: type, table: Mapping[str, Any], prefix: str) -> None:
    """An unknown key that names a credential, or any inside a free-form table: refused unechoed,
    in nested tables too, before pydantic sees (and could echo) a value."""
    fields = _init_fields(cls)
    for name, value in table.items():
        key = _join(prefix, name)
        if name not in fields:
            if looks_secret(str(name)) or str(name).lower().endswith(("_key", "_token")):
                raise SchemaError(key, _SECRET_FIX)
            continue
        hint = _hints(cls)[name]
        if typing.get_origin(hint) in (dict, Mapping):
            _refuse_secrets(value, key)
        elif (inner := _table_type(hint)) is not None and isinstance(value, Mapping):
            _refuse_secret_keys(inner, value, key)


# --- errors in kame's words -----------------------------------------------------------------------

_TAGS = ("function-after[", "union[")
"""Parts of pydantic's error locations that name a validator or a union arm, not a key."""


def _number(value: object) -> str:
    if isinstance(value, float) and value.is_integer() and math.isfinite(value):
        return str(int(value))
    return str(value)


def _loc_key(loc: tuple[int | str, ...], prefix: str) -> str:
    key = prefix
    for part in loc:
        if isinstance(part, int):
            key += f"[{part}]"
        elif not part.startswith(_TAGS):
            key = _join(key, part)
    return key


def _schema_error(cls: type, error: Mapping[str, Any], prefix: str) -> SchemaError:
    loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and p.startswith(_TAGS)))
    names = [p for p in loc if isinstance(p, str)]
    owner = cls
    for name in names[:-1]:
        inner = _table_type(_hints(owner)[name]) if name in _init_fields(owner) else None
        if inner is None:
            break
        owner = inner
    field = names[-1] if names else None
    nested = _table_type(_hints(owner)[field]) if field in _init_fields(owner) else None
    if error["type"] == "value_error" and (field is None or nested is not None):
        # A check across fields (`__post_init__`) of a table names the field it is about first.
        owner = nested or owner
        table_key = _loc_key(loc, prefix)
        text = printable(str((error.get("ctx") or {}).get("error", error["msg"])))
        name = re.split(r"[\s:(]", text, maxsplit=1)[0]
        if name in _init_fields(owner):
            return SchemaError(_join(table_key, name), text[len(name) :].lstrip(": "))
        return SchemaError(table_key or cls.__name__, text)
    at_field = bool(loc) and loc[-1] == field
    return SchemaError(
        _loc_key(loc, prefix) or prefix or cls.__name__, _message(owner, field, at_field, error)
    )


def _message(owner: type, field: str | None, at_field: bool, error: Mapping[str, Any]) -> str:
    """One of pydantic's errors in kame's words (`owner`: the table type, `field`: its key)."""
    kind, ctx, got = error["type"], error.get("ctx") or {}, error.get("input")
    shown = show_value(got)
    if kind in ("unexpected_keyword_argument", "extra_forbidden"):
        return f"unknown key (known: {', '.join(_init_fields(owner))})"
    if kind in ("missing", "missing_argument"):
        return "missing (this key is required)"
    signs = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}
    if kind in signs:
        bound = next(iter(ctx.values()))
        return f"must be {signs[kind]} {_number(bound)} (got {shown})"
    if kind == "finite_number":
        return f"must be a finite number (got {shown})"
    if kind in ("string_too_long", "too_long"):
        return f"{len(str(got))} characters: at most {ctx.get('max_length')}"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    if kind in ("dataclass_type", "dataclass_exact_type", "model_type", "dict_type"):
        return f"must be a table (got {shown})"
    if at_field and field in _init_fields(owner):
        return f"must be {describe(_hints(owner)[field])} (got {shown})"
    if kind in ("list_type", "tuple_type"):
        return f"must be a list (got {shown})"
    words = {"int_type": "an integer", "float_type": "a number", "bool_type": "true or false"}
    return f"must be {words.get(kind, 'a string' if kind == 'string_type' else kind)} (got {shown})"


def _error_order(error: Mapping[str, Any]) -> int:
    # A nested table's own error is more useful than "must be a table or none".
    return 1 if error["type"] in ("none_required", "model_type", "dict_type", "dataclass_type") else 0


# --- output ---------------------------------------------------------------------------------------


def dump(instance: Any) -> dict[str, Any]:
    """A dataclass as a TOML-ready table (None values and empty tables left out)."""
    out: dict[str, Any] = {}
    for field in dataclasses.fields(instance):
        value = getattr(instance, field.name)
        if value is None or (isinstance(value, dict) and not value):
            continue  # TOML has no null; an empty free-form table is the default
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = dump(value)
        elif isinstance(value, Path):
            value = str(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[field.name] = value
    return out


def to_toml(tables: Mapping[str, Any]) -> str:
    """TOML text for a mapping of tables (tomli-w; long texts as multi-line strings)."""
    import tomli_w

    return tomli_w.dumps(dict(tables), multiline_strings=True)


def profile_error(path: Path | str, section: str | None, err: SchemaError) -> ProfileError:
    """`file: [section] key: problem` as a ProfileError (one line, control characters escaped)."""
    where = f"[{section}] " if section else ""
    return ProfileError(printable(f"{path}: {where}{err.key}: {err.message}"))
