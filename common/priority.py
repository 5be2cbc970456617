"""Thread CPU priorities. Linux nice values are per thread; a service lowers
the priority of its background threads (interim transcripts, the tail of an
answer) *relative to* its own, so a service started under ``nice`` keeps
its background work below its urgent work instead of raising it (an
absolute value of 5 in a process at nice 10 would have run it first)."""
from __future__ import annotations

import os
import threading

NICE_MAX = 19


def lower_this_thread(by: int) -> int:
    """Lower the calling thread's priority by ``by`` nice steps (capped at
    19); returns the nice value it now has."""
    tid = threading.get_native_id()
    nice = min(NICE_MAX, os.getpriority(os.PRIO_PROCESS, tid) + max(0, by))
    os.setpriority(os.PRIO_PROCESS, tid, nice)
    return nice
