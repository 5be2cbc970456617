"""Failover between replicas of one service variant, behind the same
interfaces as the plain clients (interfaces.py), so sessions do not know.

A session keeps its preferred replica (routing.py: the LLM's KV cache and
the ASR's stream live there) as long as that address's breaker (breaker.py)
lets calls through; while it is open, each call goes to the next replica of
the same variant (stable stays stable, a canary session stays canary) whose
breaker is not open, and comes back when the preferred one has recovered.
With every replica open, a call fails at once with an error that says so.

Every BackendError feeds the address's breaker, except a request the backend
rejected (INVALID_ARGUMENT: our bug, not its failure). Retries, each once and
within the service's retry budget: RAG search (unary, idempotent); and an
LLM or TTS stream that failed before its first token or audio chunk, on
*another* replica of the variant, when it failed fast (``RETRY_FAST_S``:
refused, reset; not a hang), as nothing of it reached the client and the
breaker opens only after several failed turns (until then each would be an
error to a user). With one replica such a stream is not retried: a second
try on the same address would mostly meet the same fault. A stream that has
started to answer is never retried (its words or audio may already be with
the client)."""
from __future__ import annotations

import logging
from typing import Any, AsyncIterator, Callable

from services.gateway.backends.breaker import OPEN, Breaker, RetryBudget
from services.gateway.backends.types import BackendError

log = logging.getLogger(__name__)
# A stream that failed within this long of its call (a refused connection, a
# reset, an unavailable replica) is retried; one that failed later (a hang
# found by the idle limit, a deadline) is not: its retry would add as long again.
RETRY_FAST_S = 2.0


class Guard:
    """Process-wide: one breaker per address, one retry budget per service and variant."""

    def __init__(self, clock: Any, failures: int = 5, cooldown_s: float = 10.0,
                 retry_ratio: float = 0.2, on_open: Callable[[str, str], None] | None = None,
                 on_retry: Callable[[str], None] | None = None) -> None:
        self.clock, self.failures, self.cooldown_s, self.retry_ratio = clock, failures, cooldown_s, retry_ratio
        self._breakers: dict[str, Breaker] = {}
        self._budgets: dict[str, RetryBudget] = {}
        self._on_open = on_open or (lambda service, address: None)
        self.on_retry = on_retry or (lambda service: None)

    def breaker(self, address: str) -> Breaker:
        b = self._breakers.get(address)
        if b is None:
            b = self._breakers[address] = Breaker(self.failures, self.cooldown_s)
        return b

    def budget(self, service: str, variant: str = "stable") -> RetryBudget:
        """One per service and variant: a failing canary cannot spend the
        retries stable sessions need."""
        key = f"{service}:{variant}"
        b = self._budgets.get(key)
        if b is None:
            b = self._budgets[key] = RetryBudget(self.retry_ratio)
        return b

    def pick(self, service: str, preferred: str, replicas: list[str], avoid: str | None = None) -> str:
        """The address the next call goes to; BackendError when every breaker is
        open. ``avoid``: an address not to use (a retry's failed one)."""
        now = self.clock.now()
        order = [preferred] + [a for a in _rotated(replicas, preferred) if a != preferred]
        for addr in order:
            if addr == avoid:
                continue
            if self.breaker(addr).allow(now):
                if addr != preferred:
                    log.info("%s: %s has its circuit open; failing over to %s", service, preferred, addr)
                return addr
        b = self.breaker(preferred)
        wait = max(0.0, b.opened_at + b.cooldown_s - now)
        raise BackendError(service, preferred, f"circuit open after {b.failures} failures in a row "
                           f"(every replica of this variant); next try in {wait:.0f} s")

    def ok(self, address: str) -> None:
        self.breaker(address).success(self.clock.now())

    def release(self, address: str) -> None:
        """A call ended without telling whether the backend works (cancelled)."""
        self.breaker(address).release()

    def failed(self, service: str, address: str, exc: BackendError) -> None:
        if not exc.retryable:
            return
        b = self.breaker(address)
        was = b.state
        b.failure(self.clock.now())
        if b.state == OPEN and was != OPEN:
            log.warning("%s at %s: circuit opened (%s)", service, address, exc.message)
            self._on_open(service, address)

    def states(self) -> dict[str, str]:
        return {a: b.state for a, b in self._breakers.items()}


def _rotated(replicas: list[str], start: str) -> list[str]:
    if start not in replicas:
        return list(replicas)
    i = replicas.index(start)
    return replicas[i:] + replicas[:i]


class Routed:
    """One service of one session: its preferred replica, the others of its
    variant, and ``make(address)`` for the real client of an address."""

    def __init__(self, name: str, preferred: str, replicas: list[str], guard: Guard,
                 make: Callable[[str], Any], variant: str = "stable") -> None:
        self.name, self.preferred, self.replicas = name, preferred, replicas or [preferred]
        self._guard, self._make, self.variant = guard, make, variant
        self.address = preferred          # where the latest call went (named in errors)

    def _client(self, avoid: str | None = None) -> Any:
        self.address = self._guard.pick(self.name, self.preferred, self.replicas, avoid)
        return self._make(self.address)

    def _failed(self, address: str, exc: BackendError) -> None:
        self._guard.failed(self.name, address, exc)

    async def _stream(self, call: Callable[[Any], AsyncIterator[Any]]) -> AsyncIterator[Any]:
        budget = self._guard.budget(self.name, self.variant)
        failed: str | None = None      # the address of a first try that failed before its first item
        while True:
            client = self._client(avoid=failed)
            if failed is None:
                budget.request()       # a call that went out (not one refused by open circuits)
            addr, verdict, started, t0 = client.address, False, False, self._guard.clock.now()
            try:
                async for x in call(client):
                    started = True
                    yield x
                verdict = True
                self._guard.ok(addr)
                return
            except BackendError as exc:
                verdict = True
                self._failed(addr, exc)
                if started or failed is not None or not self._may_retry(addr, exc, budget, t0):
                    raise
                log.warning("%s: %s failed before its first reply; retrying once on another replica (%s)",
                            self.name, addr, exc.message)
                self._guard.on_retry(self.name)
                failed = addr
            finally:
                if not verdict:      # cancelled (barge-in) or abandoned: says nothing of the backend
                    self._guard.release(addr)

    def _may_retry(self, addr: str, exc: BackendError, budget: Any, t0: float) -> bool:
        """The try failed fast (refused, reset: not a hang or a deadline, whose
        retry would double a long wait), another replica of the variant could
        take the call, and the budget allows it."""
        now = self._guard.clock.now()
        if not exc.retryable or now - t0 > RETRY_FAST_S:
            return False
        elsewhere = any(a != addr and self._guard.breaker(a).would_allow(now) for a in self.replicas)
        return elsewhere and budget.try_retry()

    async def _once(self, call: Callable[[Any], Any]) -> Any:
        client = self._client()
        addr, verdict = client.address, False
        try:
            out = await call(client)
            verdict = True
            self._guard.ok(addr)
            return out
        except BackendError as exc:
            verdict = True
            self._failed(addr, exc)
            raise
        finally:
            if not verdict:
                self._guard.release(addr)


class RoutedLlm(Routed):
    def generate(self, *args: Any, **kw: Any) -> AsyncIterator[str]:
        return self._stream(lambda c: c.generate(*args, **kw))

    async def prefill(self, *args: Any, **kw: Any) -> str:
        return await self._once(lambda c: c.prefill(*args, **kw))


class RoutedTts(Routed):
    def synthesize(self, *args: Any, **kw: Any) -> AsyncIterator[Any]:
        return self._stream(lambda c: c.synthesize(*args, **kw))


class RoutedRag(Routed):
    async def search(self, query: str, k: int, min_score: float) -> list:
        budget = self._guard.budget(self.name, self.variant)
        budget.request()
        try:
            return await self._once(lambda c: c.search(query, k, min_score))
        except BackendError as exc:
            if not exc.retryable or not budget.try_retry():
                raise
            log.info("rag: retrying a failed search once (%s)", exc.message)
            self._guard.on_retry(self.name)
            return await self._once(lambda c: c.search(query, k, min_score))


class _WatchedStream:
    """A VAD/ASR stream whose failures reach the breaker of its address."""

    def __init__(self, stream: Any, on_error: Callable[[BackendError], None]) -> None:
        self._s, self._on_error = stream, on_error

    def __getattr__(self, item: str) -> Any:
        return getattr(self._s, item)

    async def _watch(self, agen: AsyncIterator[Any]) -> AsyncIterator[Any]:
        try:
            async for x in agen:
                yield x
        except BackendError as exc:
            self._on_error(exc)
            raise

    def events(self) -> AsyncIterator[Any]:
        return self._watch(self._s.events())

    def results(self) -> AsyncIterator[Any]:
        return self._watch(self._s.results())


class RoutedStreaming(Routed):
    """VAD and ASR: the keeper asks ready() then open(); both go to one replica."""

    async def ready(self) -> bool:
        client = self._client()
        ok = await client.ready()
        if not ok:
            self._failed(client.address, BackendError(self.name, client.address, "not SERVING"))
        return ok

    async def open(self, params: Any) -> Any:
        client = self._make(self.address)
        addr = client.address
        try:
            stream = await client.open(params)
        except BackendError as exc:
            self._failed(addr, exc)
            raise
        self._guard.ok(addr)
        return _WatchedStream(stream, lambda exc: self._failed(addr, exc))
