"""A pool of model instances, checked out by one generation at a time.

llama.cpp contexts can't generate concurrently, so each request borrows a
whole instance. Requests beyond the pool size wait in a bounded queue;
a full queue (or a wait past the timeout) raises ``Busy`` at once rather than
letting latency grow without bound. A freed instance goes to the oldest
waiting urgent request before any background one: an answer a person waits
for must not queue behind work that only saves time later. (The engine lets
no background request wait at all; the pool's order holds either way.) A free instance is chosen by the longest
KV-cache prefix it shares with the new prompt, so a conversation tends to come
back to the instance that already holds its earlier turns; on a tie, from
the group (batched context, see batched.py) with the most free members.

All methods run on the event loop thread, except ``awaited()``, which a
prefill's worker reads between pieces (engine.py)."""
from __future__ import annotations

import asyncio
import collections
from typing import Callable, Generic, Optional, Sequence, TypeVar

from services.llm import reuse
from services.llm.reuse import common_prefix  # noqa: F401  (re-exported)
from services.llm.schema import Busy, Priority

T = TypeVar("T")


def reused_tokens(inst: object, prompt: Sequence[int]) -> int:
    """Prompt tokens ``inst`` would not have to evaluate."""
    return _reuse(inst, prompt).tokens


def _reuse(inst: object, prompt: Sequence[int]) -> reuse.Reuse:
    """What of ``inst``'s cache ``prompt`` reuses (with a context shift where the instance can)."""
    return reuse.plan(_cached(inst), prompt, shift=bool(getattr(inst, "can_shift", False)))


class InstancePool(Generic[T]):
    def __init__(self, instances: list[T], max_waiting: int, wait_timeout_s: float,
                 on_depth: Optional[Callable[[Priority, int], None]] = None,
                 affinity_wait_s: float = 0.0, affinity_min_tokens: int = 64) -> None:
        if not instances:
            raise ValueError("the pool needs at least one instance")
        self._free: list[T] = list(instances)
        self._waiters: dict[Priority, collections.deque[asyncio.Future]] = {
            p: collections.deque() for p in Priority}
        self.size = len(instances)
        self.max_waiting = max_waiting
        self.wait_timeout_s = wait_timeout_s
        self._on_depth = on_depth or (lambda p, n: None)   # queue depth per class (metrics)
        for p in Priority:    # a series from the start: "nobody waits" is data, not a gap
            self._on_depth(p, 0)
        self._out: list[T] = []                 # checked out now
        # id(inst) → the answers waiting for it: (their future, their prompt)
        self._wanted: dict[int, collections.deque[tuple[asyncio.Future, Sequence[int] | None]]] = {}
        self.affinity_wait_s = affinity_wait_s
        self.affinity_min_tokens = affinity_min_tokens
        # id(inst) → the prompt a checked-out instance is evaluating (a prefill):
        # what its cache will hold when it comes back (promise()).
        self._promised: dict[int, Sequence[int]] = {}
        # id(inst) → the conversation its cache belongs to: the key of the last
        # request that checked it out ("" = unknown).
        self._owner: dict[int, str] = {}

    @property
    def busy(self) -> int:
        return self.size - len(self._free)

    @property
    def waiting(self) -> int:
        return sum(self.waiting_by(p) for p in Priority)

    def waiting_by(self, priority: Priority) -> int:
        return sum(1 for w in self._waiters[priority] if not w.done())

    def _best_free(self, prompt: Sequence[int]) -> T:
        """The free instance sharing the longest cached prefix with ``prompt``.
        On a tie (a new conversation shares only the system prompt with every
        instance) take the one whose cache loses the fewest tokens: evicting
        another conversation's history costs that conversation a full prompt
        evaluation on its next turn (measured with 3 people talking: first
        token 1.7-2.5 s on a miss, ~0.1 s on a hit). Then the group (batched
        context) with the most free members, i.e. the least busy decode thread."""
        free_in = collections.Counter(_group(inst) for inst in self._free)

        def score(i: int) -> tuple[int, int, int]:
            inst = self._free[i]
            r = _reuse(inst, prompt)
            return r.tokens, -r.lost(len(_cached(inst))), free_in[_group(inst)]

        best = max(range(len(self._free)), key=score)
        inst = self._free.pop(best)
        self._out.append(inst)
        return inst

    def try_checkout(self, prompt: Sequence[int] = (), max_evict: int | None = None,
                     conversation: str = "") -> T | None:
        """A free instance now, or None (never ahead of a waiting request).
        ``max_evict``: only an instance whose cache would lose at most that many
        tokens of what it holds. Background work (a prefill) passes it: warming
        one conversation must never evict another's history, whose next answer
        would then re-evaluate it all (measured: 2.9 s to the first token).
        What ``conversation`` itself left there may go: the passages of its
        earlier prefill or answer, which its next prompt no longer quotes.
        Refused that, a prefill after a document question took the other
        instance and evaluated the whole conversation again there (seen with
        one person talking: 658 tokens in 2.5 s for a replaced prefill, 461 in
        2.4 s for the warm-up after the answer, where ~80 were new)."""
        if not self._free or self.waiting:
            return None
        if max_evict is not None:
            allowed = [i for i in self._free if _reuse(i, prompt).lost(len(_cached(i))) <= max_evict
                       or (conversation and self._owner.get(id(i)) == conversation)]
            if not allowed:
                return None
            keep = [i for i in self._free if not any(i is a for a in allowed)]
            self._free = allowed
            try:
                return self._own(self._best_free(prompt), conversation)
            finally:
                self._free += keep
        return self._own(self._best_free(prompt), conversation)

    async def checkout(self, prompt: Sequence[int] = (), priority: Priority = Priority.URGENT,
                       conversation: str = "") -> T:
        if self._free and not self.waiting:
            inst = self._best_free(prompt)
            if priority is Priority.URGENT and self.affinity_wait_s > 0:
                inst = await self._prefer_own_cache(prompt, inst)
            return self._own(inst, conversation)
        return self._own(await self._wait_any(priority), conversation)

    def _own(self, inst: T, conversation: str) -> T:
        """``inst``'s cache is ``conversation``'s from now on."""
        self._owner[id(inst)] = conversation
        return inst

    def owner(self, inst: T) -> str:
        return self._owner.get(id(inst), "")

    async def _prefer_own_cache(self, prompt: Sequence[int], free: T) -> T:
        """An answer whose conversation is cached in a busy instance (most often
        its own prefill, still warming it, or its cancelled preemptive run)
        waits a moment for that instance instead of evaluating the whole
        conversation again on another one, evicting a third conversation's
        cache there (measured with 3 people talking: 1.7-3.3 s first tokens on
        such misses). Bounded by ``affinity_wait_s``, then the free one."""
        have = _reuse(free, prompt).tokens
        busy = [i for i in self._out if i is not free]
        if not busy:
            return free

        def will_reuse(inst: T) -> int:
            return reuse.plan(self._promised.get(id(inst)) or _cached(inst), prompt,
                              shift=bool(getattr(inst, "can_shift", False))).tokens
        target = max(busy, key=will_reuse)
        if will_reuse(target) - have < self.affinity_min_tokens:
            return free
        self.release(free)                      # not ours after all: back for others
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._wanted.setdefault(id(target), collections.deque()).append((fut, prompt))
        try:
            # A prefill evaluating this very prompt is waited for to its end: it
            # goes on for us (engine: awaited) and has less left to do than a
            # fresh evaluation beside it, which would also stop it and lose its work.
            limit = self.wait_timeout_s if id(target) in self._promised else self.affinity_wait_s
            async with asyncio.timeout(limit):    # not wait_for: it can drop a cancel (gh-86296)
                return await asyncio.shield(fut)
        except TimeoutError:
            pass
        except BaseException:
            if fut.done() and not fut.cancelled():
                self.release(fut.result())
            raise
        finally:
            if not fut.done():
                fut.cancel()
        if fut.done() and not fut.cancelled():   # handed over in the same instant
            return fut.result()
        if self._free and not self.waiting:
            return self._best_free(prompt)
        return await self._wait_any(Priority.URGENT)

    async def _wait_any(self, priority: Priority) -> T:
        if self.waiting >= self.max_waiting:
            raise Busy(f"all {self.size} model instances are busy and {self.waiting} "
                       f"requests are already waiting (queue limit {self.max_waiting})")
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        waiters = self._waiters[priority]
        waiters.append(fut)
        self._on_depth(priority, self.waiting_by(priority))
        got = False
        try:
            async with asyncio.timeout(self.wait_timeout_s):   # not wait_for (gh-86296)
                inst = await asyncio.shield(fut)
            got = True
            return inst
        except TimeoutError:
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
                waiters.remove(fut)
            except ValueError:
                pass
            self._on_depth(priority, self.waiting_by(priority))

    def idle(self) -> list[T]:
        """The instances not checked out now (for shutdown)."""
        return list(self._free)

    def promise(self, inst: T, prompt: Sequence[int]) -> None:
        """``inst`` (checked out) is evaluating ``prompt`` into its cache: an
        answer that starts the same way waits for it (``affinity_wait_s``)
        rather than evaluate it again beside it on the other instance. While
        a prefill's one llama.cpp batch runs, the instance's cache does not
        show it yet (measured: a document question's answer arriving during
        its 200-token prefill went to the free instance, and both evaluated
        the passages at once). Cleared when the instance is released."""
        self._promised[id(inst)] = list(prompt)

    def awaited(self, inst: T, margin: int = 0) -> bool:
        """Whether a request waits for ``inst`` itself (its cache) and, while
        ``inst`` evaluates a promised prompt (a prefill), would reuse more
        than ``margin`` tokens of its own prompt once that is done than the
        cache gives it now. A prefill whose passages the answer did not get
        (its retrieval on the final text found none) shares only the history
        with that answer, which the cache held before the prefill began:
        going on cannot serve the answer, only delay it (seen at 4 users: 239
        passage tokens in 1.4 s, the answer's first token 994 ms). On the
        faster weights (fast_prompt.py) the cache shows its progress only
        when a run ends: the prefill then goes on a little longer than it
        would need to. Safe to call from a worker thread: a dict or deque
        changed meanwhile reads as yes."""
        try:
            promised = self._promised.get(id(inst))
            shift = bool(getattr(inst, "can_shift", False))
            for fut, want in self._wanted.get(id(inst)) or ():
                if fut.done():
                    continue
                if promised is None or want is None:
                    return True
                if (reuse.plan(promised, want, shift=shift).tokens
                        - reuse.plan(_cached(inst), want, shift=shift).tokens > margin):
                    return True
            return False
        except RuntimeError:
            return True

    def release(self, inst: T) -> None:
        self._promised.pop(id(inst), None)
        wanted = self._wanted.get(id(inst))
        while wanted:
            fut, _ = wanted.popleft()
            if not fut.done():
                fut.set_result(inst)
                return
        self._wanted.pop(id(inst), None)
        for priority in Priority:   # URGENT first
            waiters = self._waiters[priority]
            while waiters:
                fut = waiters.popleft()
                if not fut.done():
                    fut.set_result(inst)
                    return
        if inst in self._out:
            self._out.remove(inst)
        self._free.append(inst)


def _cached(inst: object) -> Sequence[int]:
    fn = getattr(inst, "cached_tokens", None)
    return fn() if callable(fn) else ()


def _group(inst: object) -> object:
    return getattr(inst, "group", None)
