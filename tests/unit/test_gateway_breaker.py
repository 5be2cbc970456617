"""Invariant: a backend address that keeps failing is taken out of use for a
cool-down (its circuit opens), one probe call decides whether it is back, a
session's calls fail over to another replica of its own variant meanwhile
and return to their preferred replica once it recovers, a cancelled call is
no verdict, and retries (RAG search; an LLM or TTS stream that failed before
its first item, on another replica) never exceed their budget. All on a
virtual clock."""
from __future__ import annotations

import asyncio

import grpc
import pytest

from common.clock import VirtualClock
from services.gateway.backends.breaker import CLOSED, HALF_OPEN, OPEN, Breaker, RetryBudget
from services.gateway.backends.failover import Guard, RoutedLlm, RoutedRag, RoutedStreaming, RoutedTts
from services.gateway.backends.grpc_clients import GrpcRag, GrpcTts
from services.gateway.backends.types import BackendError, Passage
from tests.procs import free_port
from tests.unit.grpc_backends import scripted_server


# -- Breaker (pure) -----------------------------------------------------------------------
def test_opens_after_n_consecutive_failures_only():
    b = Breaker(failures=3, cooldown_s=10)
    b.failure(0); b.failure(1); b.success(2); b.failure(3); b.failure(4)
    assert b.state == CLOSED and b.allow(4)          # the success reset the count
    b.failure(5)
    assert b.state == OPEN and not b.allow(5) and not b.allow(14.9)


def test_half_open_lets_exactly_one_probe_through_and_its_verdict_decides():
    b = Breaker(failures=1, cooldown_s=10)
    b.failure(0)
    assert b.allow(10) and b.state == HALF_OPEN
    assert not b.allow(10.1)                          # one probe at a time
    b.failure(11)                                     # the probe failed: a new cool-down
    assert b.state == OPEN and not b.allow(20.9) and b.allow(21)
    b.success(21.5)
    assert b.state == CLOSED and b.allow(21.6) and b.allow(21.7)
    assert b.opens == 2


def test_a_cancelled_probe_is_no_verdict():
    b = Breaker(failures=1, cooldown_s=1)
    b.failure(0)
    assert b.allow(1) and not b.allow(1)
    b.release()
    assert b.state == HALF_OPEN and b.allow(1.1)


def test_retry_budget_is_a_share_of_requests():
    budget = RetryBudget(ratio=0.2, initial=1, cap=2)
    assert budget.try_retry() and not budget.try_retry()
    for _ in range(4):
        budget.request()
    assert not budget.try_retry()                     # 0.8 of a retry
    budget.request()
    assert budget.try_retry()
    for _ in range(100):
        budget.request()
    assert budget.tokens == 2                         # capped: a quiet hour does not buy a storm


# -- failover over scripted clients ---------------------------------------------------------
class Script:
    """A plain client of one address: 'ok', 'fail' or 'reject' per call."""

    def __init__(self, address: str, log: list) -> None:
        self.name, self.address, self.mode, self.log = "llm", address, "ok", log

    async def generate(self, *a, **kw):
        self.log.append(self.address)
        if self.mode == "fail":
            raise BackendError("llm", self.address, "unavailable")
        if self.mode == "reject":
            raise BackendError("llm", self.address, "rejected the request: bad", retryable=False)
        yield "hi"
        if self.mode == "slow":
            await asyncio.Event().wait()

    async def ready(self) -> bool:
        self.log.append(self.address)
        return self.mode == "ok"


def routed(cls, clock, replicas=("a", "b", "c"), preferred="a", failures=2):
    log: list = []
    clients = {a: Script(a, log) for a in replicas}
    guard = Guard(clock, failures=failures, cooldown_s=10)
    return cls("llm", preferred, list(replicas), guard, clients.__getitem__), clients, log, guard


async def _say(r) -> list:
    return [x async for x in r.generate([], [], 10, "id", None)]


def no_retries(guard: Guard, service: str = "llm") -> None:
    """The service's retry budget spent (and earning none): each failure fails its call."""
    b = guard.budget(service)
    b.tokens = b.ratio = 0.0


async def test_calls_fail_over_while_the_preferred_circuit_is_open_and_come_back():
    clock = VirtualClock()
    r, clients, log, guard = routed(RoutedLlm, clock)
    no_retries(guard)
    clients["a"].mode = "fail"
    for _ in range(2):
        with pytest.raises(BackendError):
            await _say(r)
    assert guard.states()["a"] == OPEN
    assert await _say(r) == ["hi"] and log[-1] == "b" and r.address == "b"
    clients["a"].mode = "ok"
    await clock.advance(10.1)
    assert await _say(r) == ["hi"] and log[-1] == "a"  # the probe went to a and succeeded
    assert guard.states()["a"] == CLOSED


async def test_a_stream_that_failed_before_its_first_item_is_retried_once_on_another_replica():
    clock = VirtualClock()
    r, clients, log, guard = routed(RoutedLlm, clock)
    retried: list = []
    guard.on_retry = retried.append                    # the gateway counts them (voice_gateway_backend_retries_total)
    clients["a"].mode = "fail"
    assert await _say(r) == ["hi"] and log == ["a", "b"] and r.address == "b"
    assert guard.breaker("a").consecutive == 1        # the failure still counts against a
    assert retried == ["llm"]
    tokens = guard.budget("llm").tokens
    clients["b"].mode = "fail"                         # a and b fail: one retry only, then the error
    with pytest.raises(BackendError) as ei:
        await _say(r)
    assert log[-2:] == ["a", "b"] and ei.value.address == "b"
    assert guard.budget("llm").tokens == pytest.approx(tokens + 0.2 - 1.0)


async def test_no_retry_with_one_replica_after_a_reply_began_on_a_rejection_or_past_the_budget():
    clock = VirtualClock()
    r, clients, log, guard = routed(RoutedLlm, clock, replicas=("a",))
    clients["a"].mode = "fail"
    with pytest.raises(BackendError):
        await _say(r)
    assert log == ["a"]                                # the same address would meet the same fault

    r, clients, log, guard = routed(RoutedLlm, clock)
    clients["a"].mode = "reject"                       # our request was bad: b would reject it too
    with pytest.raises(BackendError):
        await _say(r)
    assert log == ["a"]

    r, clients, log, guard = routed(RoutedLlm, clock)
    no_retries(guard)
    clients["a"].mode = "fail"
    with pytest.raises(BackendError):
        await _say(r)
    assert log == ["a"]

    class FailsAfterOne(Script):
        async def generate(self, *a, **kw):
            self.log.append(self.address)
            yield "hi"
            raise BackendError("llm", self.address, "reset mid-answer")

    log2: list = []
    r = RoutedLlm("llm", "a", ["a", "b"], Guard(clock), lambda a: FailsAfterOne(a, log2))
    with pytest.raises(BackendError):
        await _say(r)
    assert log2 == ["a"]                               # "hi" may be with the client already


async def test_a_tts_stream_refused_by_a_dead_replica_is_retried_on_real_grpc():
    clock = VirtualClock()
    async with scripted_server() as (good, modes):
        dead = f"127.0.0.1:{free_port()}"              # nothing listens there
        async with grpc.aio.insecure_channel(dead) as ch_dead, grpc.aio.insecure_channel(good) as ch_good:
            chans = {dead: ch_dead, good: ch_good}
            guard = Guard(clock, failures=5, cooldown_s=10)
            r = RoutedTts("tts", dead, [dead, good], guard, lambda a: GrpcTts("tts", a, chans[a], 5.0))
            chunks = [c async for c in r.synthesize("Hello.", "", 1.0)]
            assert chunks and modes.calls["tts"] == 1 and r.address == good
            assert guard.breaker(dead).consecutive == 1


async def test_a_failing_canary_spends_its_own_retry_budget_not_stables():
    clock = VirtualClock()
    log: list = []
    guard = Guard(clock, failures=100, cooldown_s=10, retry_ratio=0.0)
    clients = {a: Script(a, log) for a in ("c1", "c2", "s1", "s2")}
    clients["c1"].mode = clients["s1"].mode = "fail"
    canary = RoutedLlm("llm", "c1", ["c1", "c2"], guard, clients.__getitem__, "canary")
    stable = RoutedLlm("llm", "s1", ["s1", "s2"], guard, clients.__getitem__, "stable")
    for _ in range(3):
        assert await _say(canary) == ["hi"]            # the canary's 3 retries
    with pytest.raises(BackendError):
        await _say(canary)                             # its budget is spent
    assert await _say(stable) == ["hi"] and log[-2:] == ["s1", "s2"]   # stable still retries


async def test_a_call_cancelled_before_its_first_item_is_not_retried():
    """A barge-in cancels the answer while its first token is awaited: no
    retry, no budget spent, and the address's probe slot is freed."""
    clock = VirtualClock()
    r, clients, log, guard = routed(RoutedLlm, clock, replicas=("a", "b"))
    tokens = guard.budget("llm").tokens

    class Hangs(Script):
        async def generate(self, *a, **kw):
            self.log.append(self.address)
            await asyncio.Event().wait()
            yield "never"

    hanging = {a: Hangs(a, log) for a in ("a", "b")}
    r = RoutedLlm("llm", "a", ["a", "b"], guard, hanging.__getitem__)
    task = asyncio.create_task(_say(r))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert log == ["a"] and guard.budget("llm").tokens == pytest.approx(tokens + 0.2)
    assert guard.breaker("a").consecutive == 0 and not guard.breaker("a").probing


async def test_no_retry_when_the_other_replica_is_open_or_the_failure_was_slow():
    clock = VirtualClock()
    r, clients, log, guard = routed(RoutedLlm, clock, replicas=("a", "b"), failures=1)
    clients["b"].mode = "fail"
    no_retries(guard)
    with pytest.raises(BackendError):
        r2 = RoutedLlm("llm", "b", ["a", "b"], guard, clients.__getitem__)
        await _say(r2)                                 # b's circuit opens
    guard.budget("llm").tokens = 3.0
    clients["a"].mode = "fail"
    with pytest.raises(BackendError) as ei:
        await _say(r)
    # b is open: nowhere to retry, so the user gets a's own failure and no budget is spent
    assert log[-1] == "a" and ei.value.address == "a" and "unavailable" in ei.value.message
    assert guard.budget("llm").tokens == pytest.approx(3.0)      # (no_retries: it earns none)

    class SlowFail(Script):
        async def generate(self, *a, **kw):
            self.log.append(self.address)
            if self.address == "a":
                await clock.sleep(15.0)                 # a hang, found by the idle limit
                raise BackendError("llm", self.address, "no token for 15 s (the call hangs)")
            yield "hi"

    log3: list = []
    r3 = RoutedLlm("llm", "a", ["a", "b"], Guard(clock), lambda a: SlowFail(a, log3))
    task = asyncio.create_task(_say(r3))
    await clock.advance(15.1)
    with pytest.raises(BackendError):
        await task
    assert log3 == ["a"]                               # retrying would have added as long again


async def test_failover_stays_within_the_variants_replicas_and_fails_fast_when_all_are_open():
    clock = VirtualClock()
    r, clients, log, guard = routed(RoutedLlm, clock, replicas=("a", "b"), failures=1)
    no_retries(guard)                                  # each call tries one replica
    clients["a"].mode = clients["b"].mode = "fail"
    with pytest.raises(BackendError):
        await _say(r)                                  # a opens
    with pytest.raises(BackendError):
        await _say(r)                                  # b opens
    calls = len(log)
    with pytest.raises(BackendError) as ei:
        await _say(r)
    assert len(log) == calls                           # refused without a call
    assert "circuit open" in ei.value.message and ei.value.backend == "llm"


async def test_a_rejected_request_does_not_count_against_the_backend():
    clock = VirtualClock()
    r, clients, _, guard = routed(RoutedLlm, clock, failures=1)
    clients["a"].mode = "reject"
    with pytest.raises(BackendError):
        await _say(r)
    assert guard.states()["a"] == CLOSED


async def test_a_cancelled_probe_frees_the_half_open_circuit():
    clock = VirtualClock()
    r, clients, log, guard = routed(RoutedLlm, clock, replicas=("a",), failures=1)
    clients["a"].mode = "fail"
    with pytest.raises(BackendError):
        await _say(r)
    await clock.advance(10.1)
    clients["a"].mode = "slow"
    task = asyncio.create_task(_say(r))                # the probe, then barge-in cancels it
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    clients["a"].mode = "ok"
    assert await _say(r) == ["hi"]                    # not refused: the next call probes
    assert guard.states()["a"] == CLOSED


async def test_a_stream_keeper_asking_ready_feeds_the_breaker():
    clock = VirtualClock()
    r, clients, log, guard = routed(RoutedStreaming, clock, failures=2)
    clients["a"].mode = "fail"
    assert not await r.ready() and not await r.ready()
    assert guard.states()["a"] == OPEN
    assert await r.ready() and log[-1] == "b" and r.address == "b"


async def test_rag_search_retries_once_within_its_budget_on_real_grpc():
    clock = VirtualClock()
    async with scripted_server() as (bad, bad_modes), scripted_server() as (good, _):
        bad_modes.rag = "fail"
        async with grpc.aio.insecure_channel(bad) as ch_bad, grpc.aio.insecure_channel(good) as ch_good:
            chans = {bad: ch_bad, good: ch_good}
            guard = Guard(clock, failures=1, cooldown_s=10, retry_ratio=0.0)
            r = RoutedRag("rag", bad, [bad, good], guard, lambda a: GrpcRag("rag", a, chans[a], 2.0))
            hits = await r.search("q", 3, 0.0)         # fails on bad (its circuit opens), retried on good
            assert hits == [Passage("a.md", "A", "x", pytest.approx(0.9))]
            assert bad_modes.calls["rag"] == 1
            # The budget started with 3 retries and ratio 0 earns none: spend them.
            guard.budget("rag").tokens = 0
            await clock.advance(10.1)                    # bad is probed again, fails, no retry left
            with pytest.raises(BackendError) as ei:
                await r.search("q", 3, 0.0)
            assert ei.value.address == bad and bad_modes.calls["rag"] == 2
