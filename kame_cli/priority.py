"""CPU priority between kame's processes and threads: the real-time front-end must win a busy CPU.

On a machine with few cores the STT decode, the panel and a local LLM server compete with the
front-end loop for the same cores; a missed 80 ms deadline is audible, a late transcript is not.
The layout (docs/benchmarks.md#isolation):
- the front-end process keeps the default priority (`--realtime`: SCHED_FIFO where allowed);
- the back-end process runs under SCHED_IDLE, on CPU time nothing else wants, watched by a
  `StarvationGuard` that lifts it to niceness 10 while the STT is starved; where the process may
  not leave SCHED_IDLE again (no CAP_SYS_NICE, RLIMIT_NICE 0: most users), at niceness 19 instead;
- the llama.cpp child at niceness 19 (`--realtime`: SCHED_IDLE);
- the supervisor's helpers (panel, log writer) at niceness 10.
Raising niceness and entering SCHED_IDLE need no privilege; leaving SCHED_IDLE does.
"""

from __future__ import annotations

import contextlib
import os
import resource
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

BACKGROUND_NICENESS = 10
LLM_SERVER_NICENESS = 19
FLOOR_NICENESS = 19
"""The lowest niceness: a thread here still gets a share of a busy CPU (~1.5 % beside one at 0)."""
REALTIME_PRIORITY = 10
"""SCHED_FIFO priority asked by `--realtime`: above every normal task, below the kernel's own."""


def deprioritize_current_thread(niceness: int = BACKGROUND_NICENESS) -> bool:
    """Lower the calling thread's CPU priority (Linux: per thread); False where the OS has no way.

    Threads created afterwards by this thread inherit it, so calling this first thing in a process
    lowers the whole process.
    """
    try:
        return renice_thread(threading.get_native_id(), niceness) is not None
    except AttributeError:
        return False


def renice_thread(tid: int, niceness: int) -> bool | None:
    """Raise thread `tid`'s niceness to at least `niceness`: True if it changed, False if it was
    there already, None if the OS refused or the thread is gone."""
    try:
        # On Linux a thread is a task: PRIO_PROCESS with its native id changes that thread alone.
        current = os.getpriority(os.PRIO_PROCESS, tid)
        if current >= niceness:
            return False
        os.setpriority(os.PRIO_PROCESS, tid, niceness)
    except OSError:
        return None
    return True


def idle_thread(tid: int = 0) -> bool:
    """Put thread `tid` (0: the calling one, and the threads it creates later) under SCHED_IDLE: it
    then runs only on CPU time no other task wants. False where the OS has no such policy, or the
    thread is gone.

    The back-end's threads live here while the STT keeps up (`StarvationGuard`); `kame talk
    --realtime` puts the llama.cpp child here too. The cost: a busy machine starves them, where
    niceness 10 leaves them a tenth.
    """
    try:
        os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        return False
    return True


def deprioritize_process_tree(pid: int, niceness: int, *, idle: bool = False) -> int:
    """Lower every thread of process `pid` (already running) to `niceness`, and to SCHED_IDLE when
    `idle`; returns how many threads changed niceness."""
    changed = 0
    for tid in threads_of(pid):
        # None: the thread ended in between, or the OS refuses: nothing to do.
        changed += renice_thread(tid, niceness) is True
        if idle:
            idle_thread(tid)
    return changed


def request_realtime(priority: int = REALTIME_PRIORITY) -> str | None:
    """Ask for SCHED_FIFO (then SCHED_RR) for the calling thread and the threads it creates later.

    Returns None on success, else why it was refused (one line), and the thread keeps its priority.
    """
    if not hasattr(os, "sched_setscheduler"):
        return "this OS has no POSIX real-time scheduling"
    last: OSError | None = None
    for policy in (os.SCHED_FIFO, os.SCHED_RR):
        try:
            os.sched_setscheduler(0, policy, os.sched_param(priority))
            return None
        except OSError as err:
            last = err
    reason = last.strerror if last is not None else "refused"
    return f"{reason}: needs CAP_SYS_NICE or an rtprio limit (ulimit -r) of at least {priority}"


def threads_of(pid: int) -> list[int]:
    """The thread ids of process `pid` (Linux: /proc/PID/task); just [pid] where there is no /proc."""
    try:
        return sorted(int(name) for name in os.listdir(Path("/proc") / str(pid) / "task"))
    except OSError:
        return [pid]


def can_leave_idle() -> bool:
    """Whether this thread, once under SCHED_IDLE, may leave it again at its current niceness: the
    kernel allows it with an RLIMIT_NICE of at least 20 - niceness, or with CAP_SYS_NICE."""
    if not hasattr(os, "SCHED_IDLE"):
        return False
    try:
        niceness = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        if resource.getrlimit(resource.RLIMIT_NICE)[0] >= 20 - niceness:
            return True
        status = Path("/proc/self/status").read_bytes().splitlines()
    except (AttributeError, OSError, ValueError):
        return False
    effective = next((line.split()[1] for line in status if line.startswith(b"CapEff:")), b"0")
    return bool(int(effective, 16) >> _CAP_SYS_NICE & 1)


_CAP_SYS_NICE = 23
"""The capability's bit in /proc/PID/status's CapEff (linux/capability.h)."""


GUARD_TRIP_S = 3.0
"""The STT this far behind the user (seconds of audio queued): it is starved, lift it. Above the
2 s of frames the supervisor holds for a back-end that stalls, which arrive at once when it goes on."""
GUARD_CLEAR_S = 0.5
"""Back under this: it has caught up, back to SCHED_IDLE."""
GUARD_PERIOD_S = 0.2


class StarvationGuard:
    """Keeps every other thread of this process under SCHED_IDLE while `lag_s()` stays under
    `GUARD_TRIP_S`, and at niceness 10 from then until it is back under `GUARD_CLEAR_S`.

    Its own thread is never idle: it must run to lift the others; nor are the threads `keep()`
    names (a reader that must hear "stop" at once). It applies the policy again every
    `GUARD_PERIOD_S`, so threads started meanwhile follow. Where the process may not leave
    SCHED_IDLE again (`can_leave_idle`), the others stay at niceness 19 instead: never starved
    outright, and no guard is needed.
    """

    def __init__(self, lag_s: Callable[[], float], *, keep: Callable[[], Iterable[int]] = tuple) -> None:
        self._lag_s = lag_s
        self._keep = keep
        self.reversible = can_leave_idle()
        self.starved = False
        """Whether the guarded threads are lifted out of SCHED_IDLE now."""
        self.trips = 0
        """How many times the work fell `GUARD_TRIP_S` behind."""
        self.tid = 0
        """The guard thread's id, once started."""
        self._released = False
        self._halt = threading.Event()
        self._applied = threading.Event()
        # Started by a thread that is not idle (yet): threads inherit their creator's policy.
        self._thread = threading.Thread(target=self._run, name="kame-idle-guard", daemon=True)

    def start(self) -> None:
        """Start watching; returns once the policy is applied a first time."""
        self._thread.start()
        self._applied.wait()

    def release(self) -> None:
        """Lift the threads for good (any thread may call it, at once): the process is ending, and
        its exit needs CPU time too, which under SCHED_IDLE on a busy machine could take seconds."""
        self._released = True
        self.starved = True
        self._place_all()

    def stop(self) -> None:
        """Stop watching, and `release()`."""
        self._halt.set()
        self._thread.join(1.0)
        self.release()

    def check(self) -> None:
        """Read the lag, move between idle and lifted, and apply the policy to every other thread."""
        if self._released:
            return
        lag = self._lag_s()
        if not self.starved and lag > GUARD_TRIP_S:
            self.starved = True
            self.trips += 1
        elif self.starved and lag <= GUARD_CLEAR_S:
            self.starved = False
        self._place_all()

    def _place_all(self) -> None:
        spared = {self.tid, *self._keep()}
        for tid in threads_of(os.getpid()):
            if tid not in spared:
                self._place(tid)

    def _place(self, tid: int) -> None:
        if not self.reversible:
            renice_thread(tid, FLOOR_NICENESS)
        elif not self.starved:
            idle_thread(tid)
        else:
            with contextlib.suppress(OSError):  # the thread ended in between
                if os.sched_getscheduler(tid) == os.SCHED_IDLE:
                    os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
                os.setpriority(os.PRIO_PROCESS, tid, BACKGROUND_NICENESS)

    def _run(self) -> None:
        self.tid = threading.get_native_id()
        try:
            self.check()
        finally:
            self._applied.set()
        while not self._halt.wait(GUARD_PERIOD_S):
            self.check()
