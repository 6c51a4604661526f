"""One `[[tools]]` entry of a profile: an MCP server, how to reach it, and which of its tools the
LLM is offered. Declared like every config type (see `kame_cli.settings`)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, Field

from kame_cli.backends.oracle.config import _env_name, _http_url
from kame_cli.errors import ProfileError, printable
from kame_cli.settings import SETTINGS, NonEmpty

_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
"""What OpenAI-style function calling accepts as a function name."""


def _tool_name(name: str) -> str:
    if not _TOOL_NAME.match(name):
        raise ValueError(f"{name[:40]!r} is not a name: letters, digits, '_' or '-', at most 64 characters")
    return name


def _tool_names(value: tuple[str, ...]) -> tuple[str, ...]:
    if not value:
        raise ValueError("name at least one tool the LLM may call")
    for name in value:
        _tool_name(name)
    if len(set(value)) != len(value):
        raise ValueError("names a tool twice")
    return value


def _env_names(value: tuple[str, ...]) -> tuple[str, ...]:
    for name in value:
        if not name:
            raise ValueError("an empty variable name")
        _env_name(name)
    return value


@dataclass(frozen=True, slots=True)
class ToolServerConfig:
    """An MCP server whose allowed tools the oracle's LLM may call: started over stdio
    (`command`, `args`) or reached over streamable HTTP (`url`)."""

    __pydantic_config__ = SETTINGS

    name: Annotated[str, AfterValidator(_tool_name)]
    """The server's name in status lines, the log and the panel."""
    allow: Annotated[tuple[str, ...], Field(max_length=64), AfterValidator(_tool_names)]
    """The tools the LLM is offered, by name: an allow-list (a tool the server has and this list
    does not name is never offered; a name the server lacks is reported when it starts)."""
    command: NonEmpty | None = None
    """The program that runs the server over stdio (`python` or `python3`: kame's own interpreter,
    which has the `mcp` SDK). It runs in `cwd`."""
    args: tuple[str, ...] = ()
    """The program's arguments."""
    cwd: str | None = None
    """The folder a stdio server runs in, relative to the profile's folder; unset: the profile's
    folder (so `args = ["server.py"]` finds a script beside the profile)."""
    url: Annotated[str, Field(max_length=2048), AfterValidator(_http_url)] | None = None
    """A streamable-HTTP MCP endpoint (e.g. `http://127.0.0.1:8000/mcp`) instead of `command`."""
    api_key_env: Annotated[str, Field(max_length=128), AfterValidator(_env_name)] | None = None
    """For a `url` server: the NAME of the environment variable whose value is sent as a bearer key
    (`Authorization: Bearer ...`); the key itself never goes in a profile."""
    env: Annotated[tuple[str, ...], AfterValidator(_env_names)] = ()
    """Names of environment variables passed to a stdio server (by NAME: values, secrets included,
    come from kame's environment and are never written anywhere). Beside them it gets only a safe
    few (`HOME`, `PATH`, ...)."""
    timeout_s: Annotated[float, Field(gt=0, le=600)] = 5.0
    """Bound on one tool call; past it the call is cancelled and the LLM is told it timed out."""
    max_result_chars: Annotated[int, Field(ge=16, le=1_000_000)] = 4000
    """A result longer than this is cut to it before it reaches the LLM (and the prompt's size)."""
    start_timeout_s: Annotated[float, Field(gt=0, le=600)] = 20.0
    """How long the server may take to start and list its tools before it is given up."""

    def __post_init__(self) -> None:
        if (self.command is None) == (self.url is None):
            raise ValueError("command: give either command (stdio) or url (streamable HTTP), not both")
        if self.url is None and self.api_key_env is not None:
            raise ValueError("api_key_env: a bearer key is for a url server; a stdio server gets env")
        if self.url is not None and (self.args or self.env or self.cwd is not None):
            raise ValueError("args: args, env and cwd are for a stdio server (command), not a url")


def resolve_servers(
    shown: str, servers: Sequence[ToolServerConfig], folder: Path
) -> tuple[ToolServerConfig, ...]:
    """The profile's servers with each stdio server's folder made absolute; ProfileError when two
    servers share a name or offer the same tool (the LLM sees one namespace of tool names)."""
    names: set[str] = set()
    offered: dict[str, str] = {}
    resolved = []
    for index, server in enumerate(servers, start=1):
        where = f"{shown}: [[tools]] #{index}"
        if server.name in names:
            raise ProfileError(printable(f"{where}: name: {server.name!r} names another server too"))
        names.add(server.name)
        for tool in server.allow:
            if tool in offered:
                raise ProfileError(
                    printable(f"{where}: allow: {tool!r} is offered by {offered[tool]!r} too: allow it once")
                )
            offered[tool] = server.name
        if server.command is not None:
            cwd = (folder / (server.cwd or ".")).resolve()
            server = dataclasses.replace(server, cwd=str(cwd))
        resolved.append(server)
    return tuple(resolved)
