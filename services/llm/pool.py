"""A pool of model instances, checked out by one generation at a time.

llama.cpp contexts can't generate concurrently, so each request borrows a
whole instance. Requests beyond the pool size wait in a bounded FIFO queue;
a full queue (or a wait past the timeout) raises ``Busy`` at once rather than
letting latency grow without bound. A free instance is chosen by the longest
KV-cache prefix it shares with the new prompt, so a conversation tends to come
back to the instance that already holds its earlier turns.

All methods run on the event loop thread; workers never touch the pool."""
from __future__ import annotations

import asyncio
import collections
from typing import Generic, Sequence, TypeVar

from services.llm.schema import Busy

T = TypeVar("T")


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


class InstancePool(Generic[T]):
    def __init__(self, instances: list[T], max_waiting: int, wait_timeout_s: float) -> None:
        if not instances:
            raise ValueError("the pool needs at least one instance")
        self._free: list[T] = list(instances)
        self._waiters: collections.deque[asyncio.Future] = collections.deque()
        self.size = len(instances)
        self.max_waiting = max_waiting
        self.wait_timeout_s = wait_timeout_s

    @property
    def busy(self) -> int:
        return self.size - len(self._free)

    @property
    def waiting(self) -> int:
        return sum(1 for w in self._waiters if not w.done())

    def _best_free(self, prompt: Sequence[int]) -> T:
        best = max(range(len(self._free)),
                   key=lambda i: common_prefix(_cached(self._free[i]), prompt))
        return self._free.pop(best)

    def try_checkout(self, prompt: Sequence[int] = ()) -> T | None:
        """A free instance now, or None (never ahead of a waiting request)."""
        if self._free and not self.waiting:
            return self._best_free(prompt)
        return None

    async def checkout(self, prompt: Sequence[int] = ()) -> T:
        if self._free and not self.waiting:
            return self._best_free(prompt)
        if self.waiting >= self.max_waiting:
            raise Busy(f"all {self.size} model instances are busy and {self.waiting} "
                       f"requests are already waiting (queue limit {self.max_waiting})")
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        got = False
        try:
            inst = await asyncio.wait_for(asyncio.shield(fut), self.wait_timeout_s)
            got = True
            return inst
        except asyncio.TimeoutError:
            raise Busy(f"no model instance became free within {self.wait_timeout_s:g} s") from None
        finally:
            if not got:
                # Cancelled or timed out: an instance handed over in the same
                # instant must go back, or the pool shrinks for good.
                if fut.done() and not fut.cancelled():
                    self.release(fut.result())
                else:
                    fut.cancel()
            try:
                self._waiters.remove(fut)
            except ValueError:
                pass

    def idle(self) -> list[T]:
        """The instances not checked out now (for shutdown)."""
        return list(self._free)

    def release(self, inst: T) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(inst)
                return
        self._free.append(inst)


def _cached(inst: object) -> Sequence[int]:
    fn = getattr(inst, "cached_tokens", None)
    return fn() if callable(fn) else ()
