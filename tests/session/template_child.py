"""A child for the template's tests: it answers its setup (how many seconds to wait, the exit code,
a descriptor to write to) with what it sees of itself, says a line on stderr, and exits with that
code."""

from __future__ import annotations

import gc
import os
import resource
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

from kame_cli.session.link import serve_child


def _run(conn: Connection, setup: dict[str, Any]) -> int:
    with open("/proc/self/comm", encoding="ascii") as comm:
        name = comm.read().strip()
    fd = setup.get("fd")
    if fd is not None:
        os.write(fd, b"written by the child")
        os.close(fd)
    conn.send(
        {
            "pid": os.getpid(),
            "ppid": os.getppid(),
            "sid": os.getsid(0),
            "litellm": "litellm" in sys.modules,
            "torch": "torch" in sys.modules,
            "frozen": gc.get_freeze_count(),
            "name": name,
            "cwd": os.getcwd(),
            "marker": os.environ.get("KAME_TEST_MARKER"),
            "open_files": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        }
    )
    print(f"child {os.getpid()} ends with {setup['code']}", file=sys.stderr, flush=True)
    time.sleep(setup["linger_s"])  # a child the test kills meanwhile
    return int(setup["code"])


def main(argv: list[str] | None = None) -> None:
    serve_child(argv, _run)


if __name__ == "__main__":
    main()
