"""The tasks one recognition stream owns (session.py): each one's failure is
delivered to the stream's result queue instead of being lost in a task nobody
awaits, and closing the stream cancels them all and waits for them, so nothing
outlives it."""
from __future__ import annotations

import asyncio
from typing import Awaitable, Coroutine

from services.asr.engine import Cancelled


class OwnedTasks:
    """Spawns, guards and finally cancels one stream's tasks."""

    def __init__(self, out: asyncio.Queue[object]) -> None:
        self._out = out
        self.tasks: set[asyncio.Task] = set()

    def spawn(self, coro: Coroutine[object, object, None]) -> asyncio.Task:
        task = asyncio.create_task(self.guard(coro))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        # A task cancelled before its first step never starts ``coro``: close it (a no-op
        # when it ran), so no "never awaited" warning is left for the garbage collector.
        task.add_done_callback(lambda _: coro.close())
        return task

    async def guard(self, coro: Awaitable[None]) -> None:
        """Deliver a task's failure to the stream (the consumer raises it)."""
        try:
            await coro
        except Cancelled:
            return  # the stream's own stop flag: it is closing and wants no more results
        except Exception as exc:
            await self._out.put(exc)

    async def close(self, *others: asyncio.Task) -> None:
        """Cancel every owned task (and ``others``) and wait for them to finish.
        Failures were delivered through the queue by guard; here we only wait."""
        owned = {*others, *self.tasks}
        for t in owned:
            t.cancel()
        await asyncio.gather(*owned, return_exceptions=True)
