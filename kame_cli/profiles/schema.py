"""The one place profiles are validated: pydantic models built from the config dataclasses.

Each per-area dataclass (`SttConfig`, `FrontendConfig`, `LlmConfig`, ...) declares its fields with
type hints and metadata (`ge`, `gt`, `le`, `lt`, `choices`, `nonempty`, `check`, `max_length`). A
strict pydantic model is built from them on first use (`extra="forbid"`, finite floats, strict
types, bounded strings), so a field added to a dataclass is validated with no change here. The
validated values are then turned back into the frozen dataclass, whose `__post_init__` may add its
own checks (a `ValueError` there is reported like any other bad value).

Every error is one line naming the table and the key; key names and values in messages are escaped
(a newline or an ANSI escape in a key never reaches the terminal raw). Keys that name a credential
are refused anywhere, free-form tables included, and their values are never echoed. The TOML data
itself is bounded first (`check_limits`): nesting depth, string length, list length.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, Union

from kame_cli.errors import ProfileError, printable

if typing.TYPE_CHECKING:
    import pydantic

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
DEFAULT_MAX_LENGTH = 4_096
"""A string setting without its own `max_length` metadata (names, paths, URLs) is at most this long:
a 200 kB model name would otherwise reach a child process's command line and fail there."""
_INT_BOUND = (1 << 63) - 1
"""Integers beyond int64 reach no setting kame has (torch and C libraries overflow on them)."""
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


# --- pydantic models from dataclasses -------------------------------------------------------------


def _init_fields(cls: type) -> dict[str, dataclasses.Field[Any]]:
    return {f.name: f for f in dataclasses.fields(cls) if f.init}


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_dataclass_type(hint: Any) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def _annotation(hint: Any) -> Any:
    """The pydantic annotation for a dataclass field's type hint."""
    origin = typing.get_origin(hint)
    if hint is Path:
        return str  # TOML has no paths: a string, made a Path when the dataclass is built
    if _is_dataclass_type(hint):
        return model_for(hint)
    if origin in (Union, types.UnionType):
        arms = tuple(_annotation(a) for a in typing.get_args(hint))
        return Union[arms]  # noqa: UP007 (built at run time from a tuple)
    if origin is tuple:
        # TOML arrays arrive as lists; strict pydantic wants a list for them.
        args = typing.get_args(hint)
        item = args[0] if args else Any
        return list[_annotation(item)]  # type: ignore[misc]
    if origin is list:
        args = typing.get_args(hint)
        return list[_annotation(args[0]) if args else Any]  # type: ignore[misc]
    return hint


def _scalar_arms(hint: Any) -> set[Any]:
    if typing.get_origin(hint) in (Union, types.UnionType):
        return {a for a in typing.get_args(hint) if a is not type(None)}
    return {hint}


def _field_info(field: dataclasses.Field[Any], hint: Any) -> Any:
    """A pydantic `Field` with the metadata's bounds, plus the generic limits every setting gets."""
    from pydantic import Field

    meta = field.metadata
    kwargs: dict[str, Any] = {}
    if field.default is not dataclasses.MISSING:
        kwargs["default"] = field.default
    elif field.default_factory is not dataclasses.MISSING:
        kwargs["default_factory"] = field.default_factory
    arms = _scalar_arms(hint)
    numeric = bool(arms & {int, float})
    for bound in ("ge", "gt", "le", "lt"):
        if bound in meta:
            kwargs[bound] = meta[bound]
    if numeric and int in arms and not ({"le", "lt"} & kwargs.keys()):
        kwargs["le"] = _INT_BOUND
    if numeric and int in arms and not ({"ge", "gt"} & kwargs.keys()):
        kwargs["ge"] = -_INT_BOUND
    if float in arms:
        kwargs["allow_inf_nan"] = False
    if arms & {str, Path}:
        kwargs["max_length"] = meta.get("max_length", DEFAULT_MAX_LENGTH)
    return Field(**kwargs)


def _meta_validator(field: dataclasses.Field[Any]) -> Callable[[Any], Any] | None:
    """`choices`, `nonempty` and `check` metadata as one after-validator (None when none is set)."""
    from pydantic_core import PydanticCustomError

    meta = field.metadata
    choices: tuple[Any, ...] | None = meta.get("choices")
    nonempty = bool(meta.get("nonempty"))
    check: Callable[[Any], str | None] | None = meta.get("check")
    if choices is None and not nonempty and check is None:
        return None

    def validate(value: Any) -> Any:
        if value is None:
            return value
        if choices is not None and value not in choices:
            known = ", ".join(str(c) for c in choices)
            raise PydanticCustomError(
                "kame", "unknown value {got} (known: {known})", {"got": show_value(value), "known": known}
            )
        if nonempty and isinstance(value, str) and not value.strip():
            raise PydanticCustomError("kame", "must not be empty")
        if check is not None and (problem := check(value)):
            raise PydanticCustomError("kame", "{problem}", {"problem": problem})
        return value

    return validate


@functools.cache
def model_for(cls: type) -> type[pydantic.BaseModel]:
    """The strict pydantic model of dataclass `cls`, built from its fields and their metadata."""
    from typing import Annotated

    from pydantic import AfterValidator, ConfigDict, create_model

    definitions: dict[str, Any] = {}
    for name, field in _init_fields(cls).items():
        hint = _hints(cls)[name]
        annotation = _annotation(hint)
        validator = _meta_validator(field)
        if validator is not None:
            annotation = Annotated[annotation, AfterValidator(validator)]
        definitions[name] = (annotation, _field_info(field, hint))
    config = ConfigDict(extra="forbid", strict=True, arbitrary_types_allowed=False)
    model: type[pydantic.BaseModel] = create_model(f"{cls.__name__}Table", __config__=config, **definitions)
    return model


# --- validation -----------------------------------------------------------------------------------


def _number(value: object) -> str:
    if isinstance(value, float) and value.is_integer() and math.isfinite(value):
        return str(int(value))
    return str(value)


def _loc_key(loc: tuple[int | str, ...], prefix: str) -> str:
    key = prefix
    for part in loc:
        if isinstance(part, int):
            key += f"[{part}]"
        elif not (isinstance(part, str) and part.startswith(("function-after[", "union["))):
            key = f"{key}.{show_key(part)}" if key else show_key(part)
    return key


def _field_at(cls: type, loc: tuple[int | str, ...]) -> tuple[type, str] | None:
    """The dataclass and field name an error location points at (following nested dataclasses)."""
    current: Any = cls
    names = [p for p in loc if isinstance(p, str) and not p.startswith(("function-after[", "union["))]
    for i, name in enumerate(names):
        if not _is_dataclass_type(current) or name not in _init_fields(current):
            return None
        if i == len(names) - 1:
            return current, name
        arms = [a for a in _scalar_arms(_hints(current)[name]) if _is_dataclass_type(a)]
        current = arms[0] if arms else None
    return None


def _message(cls: type, error: Mapping[str, Any]) -> str:
    """One of pydantic's errors in kame's words."""
    kind, ctx, got = error["type"], error.get("ctx") or {}, error.get("input")
    shown = show_value(got)
    at = _field_at(cls, tuple(error["loc"]))
    if kind == "extra_forbidden":
        owner = _field_at(cls, tuple(error["loc"])[:-1])
        if owner is not None:
            table = [a for a in _scalar_arms(_hints(owner[0])[owner[1]]) if _is_dataclass_type(a)]
            known = ", ".join(_init_fields(table[0])) if table else ""
        else:
            known = ", ".join(_init_fields(cls))
        return f"unknown key (known: {known})"
    if kind == "missing":
        return "missing (this key is required)"
    if kind == "kame":
        return str(error["msg"])
    signs = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}
    if kind in signs:
        bound = next(iter(ctx.values()))
        return f"must be {signs[kind]} {_number(bound)} (got {shown})"
    if kind == "finite_number":
        return f"must be a finite number (got {shown})"
    if kind == "string_too_long":
        return f"{len(str(got))} characters: at most {ctx.get('max_length')}"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    hint = _hints(at[0])[at[1]] if at is not None else None
    if hint is not None:
        return f"must be {describe(hint)} (got {shown})"
    if kind in ("dict_type", "model_type"):
        return f"must be a table (got {shown})"
    if kind in ("list_type", "tuple_type"):
        return f"must be a list (got {shown})"
    words = {"int_type": "an integer", "float_type": "a number", "bool_type": "true or false"}
    return f"must be {words.get(kind, 'a string' if kind == 'string_type' else kind)} (got {shown})"


def _error_order(error: Mapping[str, Any]) -> int:
    # A nested table's own error is more useful than "must be a table or none".
    return 1 if error["type"] in ("none_required", "model_type", "dict_type") else 0


def build(cls: type, table: Mapping[str, Any], prefix: str = "") -> Any:
    """An instance of dataclass `cls` from a TOML table; keys are reported as `prefix.key`."""
    from pydantic import ValidationError

    if not isinstance(table, Mapping):
        raise SchemaError(prefix or cls.__name__, f"must be a table (got {show_value(table)})")
    fields = _init_fields(cls)
    for name, value in table.items():
        key = f"{prefix}.{show_key(name)}" if prefix else show_key(name)
        if name not in fields:
            if looks_secret(str(name)) or str(name).lower().endswith(("_key", "_token")):
                raise SchemaError(key, _SECRET_FIX)
            continue
        hint = _hints(cls)[name]
        if typing.get_origin(hint) in (dict, Mapping):
            _refuse_secrets(value, key)
        tables = [a for a in _scalar_arms(hint) if _is_dataclass_type(a)]
        if tables and isinstance(value, Mapping):
            _precheck(tables[0], value, key)
    try:
        validated = model_for(cls).model_validate(dict(table))
    except ValidationError as err:
        errors = sorted(err.errors(include_url=False), key=_error_order)
        first = errors[0]
        key = _loc_key(tuple(first["loc"]), prefix) or prefix or cls.__name__
        raise SchemaError(key, _message(cls, first)) from None
    return _to_dataclass(cls, validated, prefix)


def _precheck(cls: type, table: Mapping[str, Any], prefix: str) -> None:
    """Secret checks inside a nested table, before pydantic sees (and could echo) its values."""
    fields = _init_fields(cls)
    for name, value in table.items():
        key = f"{prefix}.{show_key(name)}"
        if name not in fields and (looks_secret(str(name)) or str(name).lower().endswith(("_key", "_token"))):
            raise SchemaError(key, _SECRET_FIX)
        if name in fields and typing.get_origin(_hints(cls)[name]) in (dict, Mapping):
            _refuse_secrets(value, key)


def _to_dataclass(cls: type, model: Any, prefix: str) -> Any:
    kwargs: dict[str, Any] = {}
    for name in model.model_fields_set:
        kwargs[name] = _convert(getattr(model, name), _hints(cls)[name], prefix)
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as err:
        # A check across fields names the field it is about first ("backoff_max_s (1) must be...").
        text = printable(str(err))
        name = re.split(r"[\s:(]", text, maxsplit=1)[0]
        if name in _init_fields(cls):
            key = f"{prefix}.{name}" if prefix else name
            raise SchemaError(key, text[len(name) :].lstrip(": ")) from None
        raise SchemaError(prefix or cls.__name__, text) from None


def _convert(value: Any, hint: Any, prefix: str) -> Any:
    """A validated value as the dataclass field wants it (nested dataclasses, tuples, paths)."""
    from pydantic import BaseModel

    if value is None:
        return None
    if isinstance(value, BaseModel):
        tables = [a for a in _scalar_arms(hint) if _is_dataclass_type(a)]
        return _to_dataclass(tables[0], value, prefix)
    arms = _scalar_arms(hint)
    if Path in arms and isinstance(value, str):
        return Path(value)
    if any(typing.get_origin(a) is tuple for a in arms) and isinstance(value, list):
        return tuple(value)
    return value


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
