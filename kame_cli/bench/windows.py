"""Alternating windows for `kame bench isolation`: the back-ends run, then stand still, then run...

One session, one front-end: in "tandem" windows the back-end process and the llama.cpp child run
as usual; in "alone" windows both are stopped (SIGSTOP), so the front-end steps beside the
supervisor only. Load from outside kame (other users' work on a shared machine) then falls on both
kinds of window alike, which two sessions run one after the other cannot promise. Each window also
records the CPU time used outside kame and by the stopped-or-running back-ends, so a report can
show that the comparison was fair and that the back-ends were busy.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

WindowKind = Literal["alone", "tandem"]
BACKEND_MARK = "kame_cli.session.backend_proc"
BACKGROUND_MARKS = (BACKEND_MARK, "kame_cli.backends.oracle.llama_child")
"""Command-line marks of the processes an "alone" window stops."""
_SAMPLE_S = 0.25


@dataclass(frozen=True, slots=True)
class Window:
    """One window of the run, on `time.monotonic`, with the CPU used meanwhile (in cores)."""

    kind: WindowKind
    start: float
    end: float
    outside_cores: float
    """CPU time the machine spent outside kame's processes, per second of the window."""
    background_cores: float
    """CPU time of the back-end process and the llama.cpp child, per second of the window."""
    supervisor_cores: float = 0.0
    """CPU time of the supervisor (this process: the panel, the log, the routing), per second."""
    idle_share: float = 0.0
    """Share of the window the back-end spent under SCHED_IDLE (its `StarvationGuard` lifts it
    to niceness 10 while the STT is starved, e.g. by load from outside kame)."""

    def holds(self, step_end: float, step_ms: float, settle_s: float) -> bool:
        """Whether a step that ended at `step_end` ran wholly inside the window, past its first
        `settle_s` (the back-ends start or stop then)."""
        return self.start + settle_s <= step_end - step_ms / 1000.0 and step_end <= self.end


def kind_of(index: int) -> WindowKind:
    """Windows alternate, "alone" first: the first seconds of a session are in neither kind's favour."""
    return "alone" if index % 2 == 0 else "tandem"


def steps_in(
    windows: Iterable[Window], kind: WindowKind, steps: Iterable[tuple[float, float]], settle_s: float
) -> list[float]:
    """The step times (ms) of the steps, given as (end on `time.monotonic`, ms), in windows of `kind`."""
    chosen = [w for w in windows if w.kind == kind]
    return [ms for end, ms in steps if any(w.holds(end, ms, settle_s) for w in chosen)]


def _busy_jiffies() -> int:
    """CPU time the whole machine has spent busy since boot (clock ticks): user, nice, system,
    irq, softirq; idle, iowait and a hypervisor's steal are left out."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = stat.readline().split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(f) for f in fields[:7])
    return user + nice + system + irq + softirq


def _cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of process `pid` (all its threads); 0.0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _policy(tid: int) -> int | None:
    try:
        return os.sched_getscheduler(tid)
    except OSError:
        return None


def _descendants(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of every process below `pid`."""
    import psutil

    found = []
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                found.append((child.pid, " ".join(child.cmdline())))
    return found


class AlternatingWindows:
    """Stops and resumes this process's back-end children in windows of `window_s`, on its own
    thread, until `count` windows have passed or `stop()`; everything runs again at the end."""

    def __init__(self, window_s: float, count: int) -> None:
        self.window_s = window_s
        self.count = count
        self.windows: list[Window] = []
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kame-bench-windows", daemon=True)
        self._stopped: set[int] = set()

    def start(self) -> None:
        self._thread.start()

    def wait(self, timeout: float) -> bool:
        """True once every window has passed (or `stop()` ended them)."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def stop(self) -> None:
        self._halt.set()
        self._thread.join(self.window_s + 5.0)
        self._resume()

    def _background(self) -> list[int]:
        return [pid for pid, cmd in _descendants(os.getpid()) if any(m in cmd for m in BACKGROUND_MARKS)]

    def _pause(self) -> None:
        for pid in self._background():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
                self._stopped.add(pid)

    def _resume(self) -> None:
        for pid in sorted(self._stopped):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self._stopped.clear()

    def _watch(self, until: float) -> list[bool] | None:
        """Until `until`, whether the back-end is under SCHED_IDLE, a few times a second; None if
        `stop()` came first."""
        from kame_cli.priority import threads_of

        samples = []
        while (left := until - time.monotonic()) > 0:
            if self._halt.wait(min(left, _SAMPLE_S)):
                return None
            for pid, cmd in _descendants(os.getpid()):
                if BACKEND_MARK in cmd:
                    samples.append(any(_policy(tid) == os.SCHED_IDLE for tid in threads_of(pid)))
        return samples

    def _run(self) -> None:
        tick = os.sysconf("SC_CLK_TCK")
        try:
            for index in range(self.count):
                kind = kind_of(index)
                if kind == "alone":
                    self._pause()
                else:
                    self._resume()
                start, busy = time.monotonic(), _busy_jiffies()
                tree = [os.getpid(), *(pid for pid, _ in _descendants(os.getpid()))]
                background = self._background()
                own = {pid: _cpu_seconds(pid) for pid in tree}
                idle_samples = self._watch(start + self.window_s)
                if idle_samples is None:
                    return
                end = time.monotonic()
                spent = end - start
                kame = sum(_cpu_seconds(pid) - before for pid, before in own.items())
                in_background = sum(_cpu_seconds(pid) - own[pid] for pid in background if pid in own)
                supervisor = _cpu_seconds(os.getpid()) - own[os.getpid()]
                outside = (_busy_jiffies() - busy) / tick - kame
                self.windows.append(
                    Window(
                        kind,
                        start,
                        end,
                        max(0.0, outside) / spent,
                        max(0.0, in_background) / spent,
                        supervisor / spent,
                        sum(idle_samples) / len(idle_samples) if idle_samples else 0.0,
                    )
                )
        finally:
            self._resume()
