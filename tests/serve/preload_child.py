"""A child for the template's tests: it answers its setup (how many seconds to wait, the exit code)
with what it sees of itself, says a line on stderr, and exits with that code."""

from __future__ import annotations

import os
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

from kame_cli.session.link import serve_child


def _run(conn: Connection, setup: dict[str, Any]) -> int:
    with open("/proc/self/comm", encoding="ascii") as comm:
        name = comm.read().strip()
    conn.send({"pid": os.getpid(), "sid": os.getsid(0), "litellm": "litellm" in sys.modules, "name": name})
    print(f"child {os.getpid()} ends with {setup['code']}", file=sys.stderr, flush=True)
    time.sleep(setup["linger_s"])  # a child the test kills meanwhile
    return int(setup["code"])


def main(argv: list[str] | None = None) -> None:
    serve_child(argv, _run)


if __name__ == "__main__":
    main()
