"""Session children forked from templates (`session.template`): a launched child is a fork that
already holds its role's imports, in a session of its own, in the requester's folder and
environment, with its own link, stderr and inherited descriptors at their numbers, and its exit
status (a code or the signal that killed it) reaches the supervisor; without a working or trusted
template, children still start, as fresh interpreters."""

from __future__ import annotations

import json
import os
import queue
import resource
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from kame_cli.session import template as template_module
from kame_cli.session.child import ChildProcess, launch_module
from kame_cli.session.template import (
    TEMPLATES_ENV,
    Template,
    TemplateLauncher,
    session_launcher,
    trusted_directory,
    without_templates,
)

_MODULE = "tests.session.template_child"


@pytest.fixture(scope="module")
def launcher() -> Iterator[TemplateLauncher]:
    """The suite's shared templates (tests/conftest.py), reached as a `kame talk` reaches them."""
    directory = trusted_directory(os.environ.get(TEMPLATES_ENV))
    assert directory is not None
    reached = TemplateLauncher(directory)
    yield reached
    reached.close()


def _start(
    launch: Any, code: int, linger_s: float = 0.0, role: Any = "backend", **how: Any
) -> tuple[ChildProcess, dict[str, Any], queue.Queue[ChildProcess]]:
    """A child of `_MODULE`; its first message (what it saw of itself); where its end is told."""
    messages: queue.Queue[Any] = queue.Queue()
    gone: queue.Queue[ChildProcess] = queue.Queue()
    setup = {"code": code, "linger_s": linger_s, "fd": how.pop("fd", None)}
    child = ChildProcess(role, _MODULE, setup, messages.put, gone.put, launch=launch, **how)
    return child, messages.get(timeout=60), gone


def _template_of(pid: int) -> str:
    """The role of the template process `pid` ("" if it is none)."""
    cmdline = psutil.Process(pid).cmdline()
    return cmdline[cmdline.index("--role") + 1] if "kame_cli.session.template_proc" in cmdline else ""


def test_a_fork_holds_the_imports_runs_alone_and_reports_its_exit(
    launcher: TemplateLauncher, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KAME_TEST_MARKER", "asked")
    monkeypatch.setenv("LITELLM_MODE", "PRODUCTION")  # what the template's own import set
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft - 1, hard))  # as `ulimit -n` before `kame talk`
    try:
        child, seen, gone = _start(launcher, code=3)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert _template_of(seen["ppid"]) == "backend"
    assert seen["pid"] == child.pid and seen["sid"] == child.pid  # its own session, as a spawned child
    assert seen["litellm"]  # imported by the template, not by the child
    assert seen["frozen"] > 100_000  # what it imported is out of the collector's sight in the fork
    assert seen["name"] == "kame-template_c"  # what ps and top show (15 characters at most)
    # The requester's folder, environment and limits, not the template's.
    assert (seen["cwd"], seen["marker"], seen["open_files"]) == (str(tmp_path), "asked", soft - 1)
    assert gone.get(timeout=30) is child
    assert child.returncode == 3 and child.exit_reason() == "exit status 3"
    assert child.last_error_line() == f"child {child.pid} ends with 3"


def test_a_killed_fork_reports_the_signal(launcher: TemplateLauncher) -> None:
    child, _, _ = _start(launcher, code=0, linger_s=60)
    child.kill()
    assert child.returncode == -signal.SIGKILL
    assert child.exit_reason() == "killed by SIGKILL"


def test_a_frontend_fork_finds_its_descriptors_at_their_numbers(
    launcher: TemplateLauncher, tmp_path: Path
) -> None:
    # A session's WAV files: the supervisor names their numbers in the front-end's setup.
    with open(tmp_path / "kept", "wb") as kept:
        fd = kept.fileno()
        child, seen, _ = _start(launcher, code=0, role="frontend", fd=fd, pass_fds=(fd,))
    assert _template_of(seen["ppid"]) == "frontend" and seen["torch"] and not seen["litellm"]
    assert child.process.wait(30) == 0
    assert (tmp_path / "kept").read_bytes() == b"written by the child"


def test_another_import_time_environment_gets_a_fresh_interpreter(
    launcher: TemplateLauncher, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # read by torch's import: a fork would not honour it
    child, seen, _ = _start(launcher, code=0, role="frontend")
    assert seen["ppid"] == os.getpid() and not seen["torch"] and child.process.wait(30) == 0


def test_only_a_private_folder_of_this_user_is_trusted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    (tmp_path / "open").mkdir(mode=0o755)
    (tmp_path / "link").symlink_to(private)
    assert trusted_directory(str(private)) == private
    assert trusted_directory(str(tmp_path / "open")) is None
    assert trusted_directory(str(tmp_path / "link")) is None
    assert trusted_directory(str(tmp_path / "missing")) is None and trusted_directory("") is None
    other = os.stat(private).st_uid + 1
    monkeypatch.setattr(template_module.os, "getuid", lambda: other)
    assert trusted_directory(str(private)) is None  # another user's folder
    monkeypatch.setenv(TEMPLATES_ENV, str(private))
    with session_launcher() as launch:
        assert launch is launch_module
    monkeypatch.undo()
    with session_launcher() as launch:
        assert isinstance(launch, TemplateLauncher)  # the suite's own, trusted
    with without_templates(), session_launcher() as launch:  # the benches that measure a process tree
        assert launch is launch_module
    assert trusted_directory(os.environ.get(TEMPLATES_ENV)) is not None


def test_without_a_template_children_start_as_fresh_interpreters(tmp_path: Path) -> None:
    # A folder whose socket no process listens on any more.
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    silent.bind(str(tmp_path / "backend.sock"))
    silent.close()
    child, seen, _ = _start(TemplateLauncher(tmp_path), code=0)
    assert seen["ppid"] == os.getpid() and not seen["litellm"] and child.process.wait(30) == 0
    # A template that died after it served (`kame serve`'s, which it owns).
    dead = Template("backend")
    dead.start()
    assert dead.ready.wait(120) and dead.pid is not None
    os.kill(dead.pid, signal.SIGKILL)
    child, seen, _ = _start(dead.launch, code=0)
    assert seen["ppid"] == os.getpid() and not seen["litellm"] and child.process.wait(30) == 0
    dead.close()


@pytest.mark.parametrize("same_user", [True, False])
def test_a_template_serves_only_its_own_user(
    same_user: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kame_cli.session import template_proc

    if not same_user:  # the peer's uid (SO_PEERCRED) is not the template's
        other = os.getuid() + 1
        monkeypatch.setattr(template_proc.os, "getuid", lambda: other)
    owner, _ = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with owner, socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as listener:
        listener.bind(str(tmp_path / "backend.sock"))
        listener.listen()
        loop = template_proc._Loop(owner, listener, {})
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as peer:
            peer.connect(str(tmp_path / "backend.sock"))
            loop._accept()
            peer.settimeout(10)
            assert peer.recv(4096) == (b'{"ready": true}' if same_user else b"")  # b"": closed at once
            if same_user:  # a malformed request is refused, and the template serves on
                (served,) = [key.fileobj for key in loop.selector.get_map().values()]
                for packet in (b"[1]", b'{"module": "m"}', b"{"):
                    peer.send(packet)
                    assert loop._serve(served)  # type: ignore[arg-type]
                    assert json.loads(peer.recv(4096))["refused"].startswith("a malformed request")
                # One that passes the first checks but lacks a field is refused under its own id, so
                # the requester falls back at once instead of waiting out its reply.
                loop.env = template_proc.import_time_env({})
                request = {"id": 7, "module": "m", "python": sys.executable, "env": {}}
                read_end, write_end = os.pipe()
                socket.send_fds(peer, [json.dumps(request).encode()], [read_end, write_end])
                os.close(read_end)
                os.close(write_end)
                assert loop._serve(served)  # type: ignore[arg-type]
                reply = json.loads(peer.recv(4096))
                assert reply["id"] == 7 and reply["refused"].startswith("a malformed request")


def test_a_fork_s_exit_goes_to_the_connection_that_asked_for_it_only(launcher: TemplateLauncher) -> None:
    other = TemplateLauncher(launcher.directory)
    try:
        first, _, _ = _start(launcher, code=4)
        assert first.process.wait(30) == 4
        # The template reaped `first` before it served this request: had it told `other` of that
        # exit, `other` would have read it before this child's pid.
        second, _, _ = _start(other, code=5)
        assert second.process.wait(30) == 5
        reached = other._templates["backend"]
        assert reached is not None and first.pid not in reached._codes and second.pid in reached._codes
    finally:
        other.close()
