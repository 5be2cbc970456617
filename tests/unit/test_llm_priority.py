"""Invariant: urgent LLM work goes first. A freed instance goes to the oldest
waiting urgent request before any background one; a background request
(prefill, or priority BACKGROUND) never queues: it takes a free instance or
gets Busy at once, and never one promised to a waiting urgent request; an
urgent request waiting behind a running background one gets the instance
the moment it frees. Unspecified on the wire is urgent. Driven with the
scripted fake model, asyncio events and gated tokens (no sleeps on time)."""
from __future__ import annotations

import asyncio
import threading

import pytest

from common.stubs import common_pb2, llm_pb2
from services.llm import convert
from services.llm.engine import EngineConfig, LlmEngine
from services.llm.fake import ScriptedInstance, ScriptedTokenizer
from services.llm.pool import InstancePool
from services.llm.schema import Busy, ChatMessage, GenerateRequest, Priority

U, B = Priority.URGENT, Priority.BACKGROUND
MSGS = (ChatMessage("user", "tell me something"),)


def req(priority: Priority = U, prefill: bool = False) -> GenerateRequest:
    return GenerateRequest(messages=MSGS, priority=priority, prefill=prefill)


async def collect(eng: LlmEngine, r: GenerateRequest) -> str:
    return "".join([getattr(ev, "text", "") async for ev in eng.generate(r)])


async def wait_for(pred, timeout: float = 5.0) -> None:
    end = asyncio.get_running_loop().time() + timeout
    while not pred():
        assert asyncio.get_running_loop().time() < end, "condition not reached"
        await asyncio.sleep(0.005)


# -- the pool's order -------------------------------------------------------------------

async def test_a_freed_instance_goes_to_the_waiting_urgent_request_first():
    depth: dict[Priority, int] = {}
    pool = InstancePool(["only"], max_waiting=4, wait_timeout_s=10, on_depth=depth.__setitem__)
    held = await pool.checkout()
    got: list[str] = []

    async def want(name: str, p: Priority) -> None:
        inst = await pool.checkout(priority=p)
        got.append(name)
        pool.release(inst)

    tasks = [asyncio.create_task(want("bg", B))]
    await wait_for(lambda: pool.waiting == 1)
    tasks += [asyncio.create_task(want("u1", U)), asyncio.create_task(want("u2", U))]
    await wait_for(lambda: pool.waiting == 3)
    assert (pool.waiting_by(U), pool.waiting_by(B)) == (2, 1) == (depth[U], depth[B])
    pool.release(held)
    await asyncio.gather(*tasks)
    assert got == ["u1", "u2", "bg"]
    assert pool.busy == 0 and pool.waiting == 0 and depth == {U: 0, B: 0}


async def test_a_waiter_cancelled_as_an_instance_reaches_it_is_cancelled_and_the_instance_goes_back():
    """A request cancelled (its client left) in the very instant a freed
    instance is handed to it: the cancel holds and the instance returns to
    the pool. (asyncio.wait_for on Python 3.11 returned the instance and
    dropped the cancel, gh-86296: a request nobody waits for ran on it.)"""
    pool = InstancePool(["only"], max_waiting=4, wait_timeout_s=10)
    held = await pool.checkout()
    waiter = asyncio.create_task(pool.checkout())
    await wait_for(lambda: pool.waiting == 1)
    pool.release(held)          # handed to the waiter ...
    waiter.cancel()             # ... as it is cancelled
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert pool.busy == 0 and pool.waiting == 0


# -- the engine's policy ----------------------------------------------------------------

async def test_an_urgent_request_waiting_behind_a_background_one_gets_the_next_instance():
    gate = threading.Semaphore(0)
    inst = ScriptedInstance(["a", "b"], gate=gate)
    eng = LlmEngine(ScriptedTokenizer(), [inst], EngineConfig(max_waiting=4, wait_timeout_s=10))
    background = asyncio.create_task(collect(eng, req(B)))
    await wait_for(lambda: inst.generations == 1)      # the background answer holds the instance
    urgent = asyncio.create_task(collect(eng, req(U)))
    await wait_for(lambda: eng.pool.waiting_by(U) == 1)
    # A second background request meanwhile is refused, not queued ahead of it.
    with pytest.raises(Busy, match="never queues"):
        await asyncio.wait_for(collect(eng, req(B)), 1)
    assert eng.pool.waiting_by(B) == 0
    for _ in range(6):
        gate.release()
    assert await asyncio.wait_for(background, 5) == "ab"
    assert await asyncio.wait_for(urgent, 5) == "ab"
    assert inst.generations == 2 and eng.pool.busy == 0
    eng.close()


async def test_a_background_request_runs_on_a_free_instance():
    eng = LlmEngine(ScriptedTokenizer(), [ScriptedInstance(["ok"])], EngineConfig())
    assert await collect(eng, req(B)) == "ok"
    eng.close()


async def test_prefill_never_takes_an_instance_an_urgent_request_waits_for():
    gate = threading.Semaphore(0)
    a = ScriptedInstance(["x"], gate=gate)
    eng = LlmEngine(ScriptedTokenizer(), [a], EngineConfig(max_waiting=4, wait_timeout_s=10))
    first = asyncio.create_task(collect(eng, req(U)))
    await wait_for(lambda: a.generations == 1)
    second = asyncio.create_task(collect(eng, req(U)))
    await wait_for(lambda: eng.pool.waiting == 1)
    done = [ev async for ev in eng.generate(GenerateRequest(
        messages=(ChatMessage("user", "what is the"),), prefill=True))]
    assert done[-1].finish_reason == "busy" and not a.prefills
    for _ in range(4):
        gate.release()
    await asyncio.gather(first, second)
    eng.close()


# -- the wire ---------------------------------------------------------------------------

@pytest.mark.parametrize("wire, want", [
    (common_pb2.PRIORITY_UNSPECIFIED, U),     # clients from before the field: as fast as ever
    (common_pb2.PRIORITY_URGENT, U),
    (common_pb2.PRIORITY_BACKGROUND, B),
    (7, U),                                   # a class from a newer proto: not slowed down
])
def test_priority_from_the_wire(wire, want):
    pb = llm_pb2.GenerateRequest(messages=[llm_pb2.ChatMessage(role="user", content="hi")], priority=wire)
    r = convert.request_from_pb(pb)
    assert r.priority is want and r.background == (want is B)


def test_prefill_is_background_whatever_the_caller_says():
    assert req(U, prefill=True).background and not req(U).background
