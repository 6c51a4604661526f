"""A real child process for `ChildProcess`'s tests, run as `python -m tests.session.child_script --fd N`.

Its setup message says how it behaves: `echo` sends every message back until Stop; `deaf` never
answers Stop; `crash` writes a traceback's last line to stderr and exits 3.
"""

from __future__ import annotations

import sys
import threading
from multiprocessing.connection import Connection
from typing import Any

from kame_cli.session.link import serve_child
from kame_cli.session.wire import Stop


def run(conn: Connection, mode: Any) -> int:
    if mode == "crash":
        print("Traceback (most recent call last):\n  File ...\nValueError: boom", file=sys.stderr)
        return 3
    if mode == "deaf":
        threading.Event().wait()
    while not isinstance(message := conn.recv(), Stop):
        conn.send(message)
    return 0


if __name__ == "__main__":
    serve_child(None, run)
