"""Every key of a profile table, read from its config type's own declarations (for docs and tests).

A config type declares each key once: its type, its bounds and choices in the annotation, its
default, and its documentation in the docstring under it. This reads them back, so that
docs/profiles.md and the profile fuzz follow the types with no list of keys of their own.
"""

from __future__ import annotations

import dataclasses
import itertools
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, Union

from kame_cli.settings import SETTINGS, not_blank

_BOUNDS = ("ge", "gt", "le", "lt")


@dataclass(frozen=True, slots=True)
class Key:
    """One key of a table: what it accepts and what it does."""

    name: str
    hint: Any
    """The key's type without its constraints (e.g. `int | None`)."""
    default: Any
    """The default value, or `dataclasses.MISSING` when the key is required."""
    doc: str
    bounds: dict[str, float]
    """Numeric bounds by kind: `ge`, `gt`, `le`, `lt`."""
    max_length: int | None
    """Longest string accepted (strings only)."""
    nonempty: bool
    """An empty or blank string is refused."""

    @property
    def choices(self) -> tuple[Any, ...]:
        """The values a `Literal` key accepts (empty for other keys)."""
        for arm in arms(self.hint):
            if typing.get_origin(arm) is Literal:
                return typing.get_args(arm)
        return ()

    @property
    def table(self) -> type | None:
        """The config type of a nested table (e.g. `[llm.server]`), if the key is one."""
        for arm in arms(self.hint):
            if isinstance(arm, type) and dataclasses.is_dataclass(arm):
                return arm
        return None


def arms(hint: Any) -> list[Any]:
    """The types a hint allows, None left out (`int | None` -> [int])."""
    if typing.get_origin(hint) in (Union, types.UnionType):
        return [a for a in typing.get_args(hint) if a is not type(None)]
    return [hint]


def keys_of(cls: type) -> list[Key]:
    """The keys of config type `cls`, in declaration order."""
    plain = typing.get_type_hints(cls)
    full = typing.get_type_hints(cls, include_extras=True)
    docs = field_docs(cls)
    found = []
    for field in dataclasses.fields(cls):
        if not field.init:
            continue
        constraints = list(_constraints(full[field.name]))
        bounds = {k: getattr(c, k) for c in constraints for k in _BOUNDS if hasattr(c, k)}
        lengths = [c.max_length for c in constraints if hasattr(c, "max_length")]
        strings = {str} & set(arms(plain[field.name]))
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            default = dataclasses.MISSING
        found.append(
            Key(
                name=field.name,
                hint=plain[field.name],
                default=default,
                doc=docs.get(field.name, ""),
                bounds=bounds,
                max_length=(lengths[0] if lengths else SETTINGS.get("str_max_length")) if strings else None,
                nonempty=any(getattr(c, "func", None) is not_blank for c in constraints),
            )
        )
    return found


def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of class `cls` (from its source), by field name."""
    import ast
    import inspect
    import textwrap

    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs: dict[str, str] = {}
    for node, after in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[node.target.id] = inspect.cleandoc(after.value.value)
    return docs


def _constraints(hint: Any) -> typing.Iterator[Any]:
    """Every constraint object in an annotation, through `Annotated`, unions and `Field(...)`."""
    if typing.get_origin(hint) is typing.Annotated:
        inner, *extras = typing.get_args(hint)
        yield from _constraints(inner)
        for extra in extras:
            yield extra
            yield from getattr(extra, "metadata", ())  # a `Field(ge=...)` holds `Ge(...)` objects
    elif typing.get_origin(hint) in (Union, types.UnionType):
        for arm in typing.get_args(hint):
            yield from _constraints(arm)
