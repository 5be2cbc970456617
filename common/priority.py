"""Thread CPU priorities. Linux nice values are per thread; a service lowers
the priority of its background threads (interim transcripts, the tail of an
answer) *relative to* its own, so a service started under ``nice`` keeps
its background work below its urgent work instead of raising it (an
absolute value of 5 in a process at nice 10 would have run it first)."""
from __future__ import annotations

import os
import threading
from typing import Any, Callable, TypeVar

T = TypeVar("T")

NICE_MAX = 19


def lower_this_thread(by: int) -> int:
    """Lower the calling thread's priority by ``by`` nice steps (capped at
    19); returns the nice value it now has."""
    tid = threading.get_native_id()
    nice = min(NICE_MAX, os.getpriority(os.PRIO_PROCESS, tid) + max(0, by))
    os.setpriority(os.PRIO_PROCESS, tid, nice)
    return nice


def load_niced(nice: int, load: Callable[[], T], name: str = "load-niced") -> T:
    """Build a model on a thread with a lower CPU priority: the model's worker
    threads are created there and inherit it (Linux priorities are per thread)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            lower_this_thread(nice)
            box["model"] = load()
        except BaseException as exc:   # handed to the caller below
            box["error"] = exc

    t = threading.Thread(target=run, name=name)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["model"]
