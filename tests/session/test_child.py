"""`ChildProcess` with the real launcher: a real interpreter, socket and stderr pipe."""

from __future__ import annotations

import queue
import signal
import threading
from typing import Any

from kame_cli.session.child import ChildProcess, exit_reason

MODULE = "tests.session.child_script"
WAIT_S = 30.0


class Watch:
    """What a child sent, and its one `on_gone` call."""

    def __init__(self) -> None:
        self.messages: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.gone: list[ChildProcess] = []
        self.ended = threading.Event()

    def on_gone(self, child: ChildProcess) -> None:
        self.gone.append(child)
        self.ended.set()

    def start(self, mode: str) -> ChildProcess:
        return ChildProcess("frontend", MODULE, mode, self.messages.put, self.on_gone)


def test_a_child_that_is_asked_to_stop_exits_0_and_is_not_a_death() -> None:
    watch = Watch()
    child = watch.start("echo")
    child.link.send({"ping": 1})
    assert watch.messages.get(timeout=WAIT_S) == {"ping": 1}  # setup first, then the link both ways
    child.stop(WAIT_S)
    assert watch.ended.wait(WAIT_S) and watch.gone == [child]
    assert child.returncode == 0 and child.expected_end and child.exit_reason() == "exit status 0"


def test_a_child_that_ignores_stop_is_killed_after_the_timeout() -> None:
    watch = Watch()
    child = watch.start("deaf")
    child.stop(0.3)
    assert child.returncode == -signal.SIGKILL and child.exit_reason() == "killed by SIGKILL"
    assert watch.ended.wait(WAIT_S) and watch.gone == [child]


def test_a_child_that_dies_is_reported_once_with_its_last_words() -> None:
    watch = Watch()
    child = watch.start("crash")
    assert watch.ended.wait(WAIT_S) and watch.gone == [child]
    assert not child.expected_end and child.returncode == 3
    assert child.last_error_line() == "ValueError: boom"  # the traceback's indented lines passed over
    assert exit_reason(None) == "still running" and exit_reason(-99) == "killed by signal 99"
