"""Background threads are lowered relative to their service's priority: in a
process started at nice 3, lowering by 5 gives 8 (an absolute 5 would have
put background work *ahead* of the service's urgent work, as it did for the
LLM's answer tail when the tests ran under nice 10); never past 19."""
from __future__ import annotations

import os
import threading

from common.priority import lower_this_thread


def _in_thread(start: int, by: int) -> int:
    box: dict[str, int] = {}

    def run() -> None:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, max(start, os.getpriority(os.PRIO_PROCESS, tid)))
        base = os.getpriority(os.PRIO_PROCESS, tid)
        box["base"], box["now"] = base, lower_this_thread(by)
        box["seen"] = os.getpriority(os.PRIO_PROCESS, tid)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    assert box["now"] == box["seen"]
    return box["now"] - box["base"]


def test_lowering_is_relative_to_the_thread_priority() -> None:
    assert _in_thread(3, 5) == 5
    assert _in_thread(12, 5) == 5


def test_never_below_the_lowest_priority() -> None:
    box: dict[str, int] = {}
    t = threading.Thread(target=lambda: box.setdefault("n", lower_this_thread(40)))
    t.start()
    t.join()
    assert box["n"] == 19
