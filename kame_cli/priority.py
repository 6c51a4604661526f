"""CPU priority between kame's processes and threads: the real-time front-end must win a busy CPU.

On a machine with few cores the STT decode, the panel and a local LLM server compete with the
front-end loop for the same cores; a missed 80 ms deadline is audible, a late transcript is not.
The front-end process keeps the default priority (or asks for a real-time policy with
`--realtime`); the back-end process and the supervisor's helpers run at niceness 10; the llama.cpp
child at 15, below both. With `--realtime` the back-end and the llama.cpp child go further, to
SCHED_IDLE. Raising niceness and SCHED_IDLE need no privilege.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

BACKGROUND_NICENESS = 10
LLM_SERVER_NICENESS = 15
REALTIME_PRIORITY = 10
"""SCHED_FIFO priority asked by `--realtime`: above every normal task, below the kernel's own."""


def deprioritize_current_thread(niceness: int = BACKGROUND_NICENESS) -> bool:
    """Lower the calling thread's CPU priority (Linux: per thread); False where the OS has no way.

    Threads created afterwards by this thread inherit it, so calling this first thing in a process
    lowers the whole process.
    """
    try:
        # On Linux a thread is a task: PRIO_PROCESS with its native id changes that thread alone.
        current = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), max(current, niceness))
    except (AttributeError, OSError):
        return False
    return True


def idle_thread(tid: int = 0) -> bool:
    """Put thread `tid` (0: the calling one, and the threads it creates later) under SCHED_IDLE: it
    then runs only on CPU time no other task wants. False where the OS has no such policy, or the
    thread is gone.

    `kame talk --realtime` does this to the back-end process and the llama.cpp child. In the
    isolation bench it cut the front-end's deadline misses by two thirds (`kame bench isolation`); the cost is
    that a busy machine starves the STT and the LLM, where niceness 10 leaves them a tenth.
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
    try:
        tasks = [int(name) for name in os.listdir(Path("/proc") / str(pid) / "task")]
    except OSError:
        tasks = [pid]
    for tid in tasks:
        try:
            current = os.getpriority(os.PRIO_PROCESS, tid)
            if current < niceness:
                os.setpriority(os.PRIO_PROCESS, tid, niceness)
                changed += 1
        except OSError:
            continue  # the thread ended in between, or the OS refuses: nothing to do
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
