"""Injected clocks: real monotonic time in production, a virtual clock in
timing tests so turn-taking is tested deterministically without sleeps."""
from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds, monotonic."""

    async def sleep(self, seconds: float) -> None: ...


class MonotonicClock:
    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class WallClock:
    """Epoch seconds: for times compared across processes and hosts (a
    release's step times in Redis, turn samples), where monotonic time of one
    process means nothing to another."""

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class VirtualClock:
    """A clock that only moves when a test advances it.

    ``sleep`` parks the caller until ``advance`` moves time past its deadline;
    ``advance`` wakes sleepers in deadline order and lets the loop run them, so
    a scripted conversation executes in microseconds with exact timestamps."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._seq), fut))
        await fut

    async def _settle(self) -> None:
        for _ in range(50):
            await asyncio.sleep(0)

    async def advance(self, seconds: float, step: float = 0.01) -> None:
        """Move time forward by ``seconds`` in ``step`` increments, waking sleepers."""
        target = self._now + seconds
        await self._settle()
        while self._now < target - 1e-12:
            self._now = min(target, self._now + step)
            while self._sleepers and self._sleepers[0][0] <= self._now + 1e-12:
                _, _, fut = heapq.heappop(self._sleepers)
                if not fut.done():
                    fut.set_result(None)
            await self._settle()
