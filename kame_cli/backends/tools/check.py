"""`kame profiles check` for `[[tools]]`: each stdio server's program and folder exist; online, each
server starts and lists the tools its allow-list names."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import Sequence

from kame_cli.backends.tools.config import ToolServerConfig
from kame_cli.errors import ProfileError, printable


def check_tools(shown: str, servers: Sequence[ToolServerConfig], *, online: bool) -> list[str]:
    """What passed, one line per server; ProfileError (one line, exit 2) at the first problem."""
    from kame_cli.backends.tools.host import program

    for index, server in enumerate(servers, start=1):
        where = f"{shown}: [[tools]] #{index} ({server.name})"
        if server.command is None:
            continue
        if server.cwd is not None and not os.path.isdir(server.cwd):
            raise ProfileError(printable(f"{where}: cwd: folder {server.cwd} does not exist"))
        command = program(server.command)
        if shutil.which(command, path=os.environ.get("PATH")) is None and not os.access(
            os.path.join(server.cwd or ".", command), os.X_OK
        ):
            raise ProfileError(
                printable(f"{where}: command: program {command!r} not found: install it or fix PATH")
            )
    if not online:
        return [f"[[tools]] {server.name}: {server.command or server.url}" for server in servers]
    return asyncio.run(_listed(shown, servers))


async def _listed(shown: str, servers: Sequence[ToolServerConfig]) -> list[str]:
    from kame_cli.backends.tools.host import ToolHost

    told: list[tuple[str, str]] = []
    host = ToolHost(servers, lambda state, message: told.append((state, message)))
    host.start()
    try:
        with contextlib.suppress(TimeoutError):  # a server not ready by then has said so
            async with asyncio.timeout(max(s.start_timeout_s for s in servers) + 1.0):
                await host.settled()
    finally:
        await host.close()
    for state, message in told:
        if state != "ok":
            raise ProfileError(printable(f"{shown}: [[tools]] {message}"))
    return [f"[[tools]] {message}" for _, message in told]
