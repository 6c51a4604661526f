"""A real `kame serve` (random:tiny front-end, offline profile: tiny.en and a local llama.cpp) on a
free loopback port, for the tests of this folder."""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kame_cli.session.template import TEMPLATES_ENV
from tests.session.conftest import kame_command, kame_env

_READY = re.compile(r"ready: (wss?)://127\.0\.0\.1:(\d+)/api/chat")
OWN_PROCESSES = {TEMPLATES_ENV: ""}
"""`start_server`'s `env` for a server as a user starts it: its front-end host and back-ends are its
own descendants (a fresh host, back-ends forked from its own template), not forks of the worker's
shared templates (tests/conftest.py), so a test finds them there, and this path stays tested."""


@dataclass
class Server:
    process: subprocess.Popen[str]
    port: int
    log_dir: Path
    stderr: list[str]
    tls: bool = False

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def sessions(self) -> list[Path]:
        return sorted(self.log_dir.glob("session-*"), key=lambda p: int(p.name.rsplit("-", 1)[1]))

    def terminate(self, timeout: float = 5.0) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(5)


def start_server(
    log_dir: Path, *args: str, timeout: float = 120.0, env: dict[str, str] | None = None
) -> Server:
    """`kame serve` on port 0; returns once it printed its ready line (its load failed: the test fails)."""
    process = subprocess.Popen(
        kame_command(
            "serve",
            "--model",
            "random:tiny",
            "--profile",
            "offline",
            "--port",
            "0",
            "--log-dir",
            str(log_dir),
            *args,
        ),
        env={**kame_env(), **(env or {})},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    assert process.stderr is not None
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        lines.append(line)
        match = _READY.search(line)
        if match:
            import threading

            # Keep reading, so that the server never blocks on a full pipe.
            threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True).start()  # type: ignore[arg-type]
            return Server(process, int(match.group(2)), log_dir, lines, tls=match.group(1) == "wss")
    process.kill()
    process.wait(5)
    raise AssertionError("kame serve did not get ready:\n" + "".join(lines))


@contextlib.contextmanager
def serving(log_dir: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Server]:
    """`start_server`, terminated when the block ends."""
    running = start_server(log_dir, *args, env=env)
    try:
        yield running
    finally:
        running.terminate()


def talk_command(server: Server, question: Path, output: Path, log_dir: Path) -> list[str]:
    """`kame talk --server` on the WAV `question`, writing `output` and a log in `log_dir` (plain lines)."""
    return kame_command(
        "talk",
        "--server",
        f"ws://127.0.0.1:{server.port}",
        "--input",
        str(question),
        "--output",
        str(output),
        "--log-dir",
        str(log_dir),
        "--no-ui",
    )


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serving(tmp_path_factory.mktemp("serve") / "logs", "--max-queue", "1") as running:
        yield running
