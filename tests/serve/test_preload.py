"""`kame serve`'s back-end template (`serve.preload`): a launched child is a fork that already holds
LiteLLM's import, in a session of its own, with its own link and stderr, and its exit status (a code
or the signal that killed it) reaches the supervisor; without a working template, children still
start, as fresh interpreters."""

from __future__ import annotations

import os
import queue
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kame_cli.serve.preload import Preloader
from kame_cli.session.child import ChildProcess

_MODULE = "tests.serve.preload_child"


@pytest.fixture(scope="module")
def preloader() -> Iterator[Preloader]:
    template = Preloader()
    template.start()
    assert template.ready.wait(120) and template.refused is None, template.refused
    yield template
    template.close()


def _start(
    launch: Any, code: int, linger_s: float = 0.0, pass_fds: tuple[int, ...] = ()
) -> tuple[ChildProcess, dict[str, Any], queue.Queue[ChildProcess]]:
    """A child of `_MODULE`; its first message (what it saw of itself); where its end is told."""
    messages: queue.Queue[Any] = queue.Queue()
    gone: queue.Queue[ChildProcess] = queue.Queue()
    child = ChildProcess(
        "backend", _MODULE, {"code": code, "linger_s": linger_s}, messages.put, gone.put,
        launch=launch, pass_fds=pass_fds,
    )  # fmt: skip
    return child, messages.get(timeout=60), gone


def test_a_fork_holds_the_imports_runs_alone_and_reports_its_exit(preloader: Preloader) -> None:
    child, seen, gone = _start(preloader.launch, code=3)
    assert seen["pid"] == child.pid and seen["sid"] == child.pid  # its own session, as a spawned child
    assert seen["litellm"]  # imported by the template, not by the child
    assert seen["name"] == "kame-preload_ch"  # what ps and top show (15 characters at most)
    assert gone.get(timeout=30) is child
    assert child.returncode == 3 and child.exit_reason() == "exit status 3"
    assert child.last_error_line() == f"child {child.pid} ends with 3"


def test_a_killed_fork_reports_the_signal(preloader: Preloader) -> None:
    child, _, _ = _start(preloader.launch, code=0, linger_s=60)
    child.kill()
    assert child.returncode == -signal.SIGKILL
    assert child.exit_reason() == "killed by SIGKILL"


def test_without_a_template_children_start_as_fresh_interpreters() -> None:
    template = Preloader()
    template.start()
    assert template.ready.wait(120)
    assert template._process is not None
    os.kill(template._process.pid, signal.SIGKILL)
    template._process.wait(10)
    child, seen, _ = _start(template.launch, code=0)
    assert not seen["litellm"] and child.process.wait(30) == 0
    template.close()


def test_a_child_that_inherits_descriptors_is_spawned(preloader: Preloader, tmp_path: Path) -> None:
    # The template passes a link and a stderr pipe only; a session's WAV files go to a spawned child.
    with open(tmp_path / "kept", "wb") as kept:
        child, seen, _ = _start(preloader.launch, code=0, pass_fds=(kept.fileno(),))
    assert not seen["litellm"] and child.process.wait(30) == 0
