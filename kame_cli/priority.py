"""CPU priority between kame's own threads: the real-time front-end must win a busy CPU.

On a machine with few cores the STT decode and a local LLM server compete with the front-end loop
for the same cores; a missed 80 ms deadline is audible, a late transcript is not. So the helpers
lower their own priority (raising niceness needs no privilege) and the front-end keeps the default.
"""

from __future__ import annotations

import os
import threading

BACKGROUND_NICENESS = 10


def deprioritize_current_thread(niceness: int = BACKGROUND_NICENESS) -> bool:
    """Lower the calling thread's CPU priority (Linux: per thread); False where the OS has no way."""
    try:
        # On Linux a thread is a task: PRIO_PROCESS with its native id changes that thread alone.
        current = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), max(current, niceness))
    except (AttributeError, OSError):
        return False
    return True
