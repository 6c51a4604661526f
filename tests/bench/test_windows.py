"""`kame bench isolation`'s alternating windows: the back-end children really stop and resume, and
each step counts in the window it ran wholly inside."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from kame_cli.bench.windows import AlternatingWindows, Window, kind_of, steps_in


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def _wait_for_state(pid: int, state: str) -> None:
    deadline = time.monotonic() + 10
    while _state(pid) != state:
        assert time.monotonic() < deadline, f"process {pid} never reached state {state}"
        time.sleep(0.01)


def test_steps_count_only_wholly_inside_their_window_past_its_settling() -> None:
    windows = [Window("alone", 10.0, 15.0, 0.0, 0.0), Window("tandem", 15.0, 20.0, 0.0, 0.0)]
    steps = [
        (10.2, 40.0),  # in the settling time of the alone window
        (12.0, 40.0),
        (15.02, 40.0),  # began before the back-ends resumed
        (16.0, 60.0),
        (19.99, 30.0),
        (20.5, 30.0),  # after the last window
    ]
    assert steps_in(windows, "alone", steps, 0.3) == [40.0]
    assert steps_in(windows, "tandem", steps, 0.3) == [60.0, 30.0]
    assert [kind_of(i) for i in range(4)] == ["alone", "tandem", "alone", "tandem"]


def test_alone_windows_stop_the_backend_children_and_resume_them() -> None:
    # A stand-in whose command line carries the back-end's module name, as the real one does.
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "kame_cli.session.backend_proc"]
    )
    try:
        full = AlternatingWindows(0.3, 2)
        full.start()
        _wait_for_state(child.pid, "T")
        assert full.wait(10)
        assert [w.kind for w in full.windows] == ["alone", "tandem"]
        assert all(w.end - w.start >= 0.3 and w.outside_cores >= 0 for w in full.windows)
        assert _state(child.pid) != "T"
        # Stopped early, in an alone window (the session ended): everything runs again.
        early = AlternatingWindows(30.0, 2)
        early.start()
        _wait_for_state(child.pid, "T")
        early.stop()
        assert _state(child.pid) != "T" and early.windows == []
    finally:
        child.kill()
        child.wait()
