"""`make run`'s children share the supervisor's session, so the CPU priorities
the services give their background threads (nice) weigh against the other
services' threads, and each has a process group of its own, so a terminal's
Ctrl-C reaches only the supervisor."""
from __future__ import annotations

import asyncio
import os
import sys

from stack.supervisor import Child


def test_a_child_keeps_the_session_and_has_its_own_group():
    async def main() -> tuple[int, int, int]:
        child = Child("sleeper", [sys.executable, "-c", "import time; time.sleep(30)"],
                      dict(os.environ), "36")
        await child.start()
        assert child.proc is not None
        pid = child.proc.pid
        try:
            return pid, os.getsid(pid), os.getpgid(pid)
        finally:
            await child.stop(grace=5)

    pid, sid, pgid = asyncio.run(main())
    assert sid == os.getsid(0), "a session of its own is a scheduling group of its own (autogroup)"
    assert pgid == pid and pgid != os.getpgid(0), "no group of its own: Ctrl-C would reach it directly"
