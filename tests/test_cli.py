from __future__ import annotations

import subprocess
import sys

from kame_cli.bus import EventBus
from kame_cli.cli import run
from kame_cli.events import FrontendText

_HEAVY_PROBE = (
    "import sys, kame_cli.cli; kame_cli.cli._register_commands(); "
    "print(sorted(m for m in ('torch', 'moshi', 'litellm', 'faster_whisper') if m in sys.modules))"
)


def test_help_lists_commands_and_is_fast_to_import() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _HEAVY_PROBE],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "[]", "kame's CLI must not import heavy modules at import time"


def test_unknown_command_exits_2(capsys) -> None:
    assert run(["no-such-command"]) == 2
    assert "No such command" in capsys.readouterr().err


def test_bus_bounded_subscription_drops_and_counts() -> None:
    bus = EventBus()
    small = bus.subscribe("panel", maxsize=2)
    lossless = bus.subscribe("log", maxsize=0)
    for i in range(5):
        bus.publish(FrontendText(t=float(i), step=i, text="x"))
    assert [e.step for e in small.drain()] == [0, 1]
    assert small.dropped == 3
    assert [e.step for e in lossless.drain()] == [0, 1, 2, 3, 4]
