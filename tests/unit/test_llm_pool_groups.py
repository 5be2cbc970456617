"""Invariant: with batched slots (instances in groups, one group per decode
thread), a new request whose prompt no free slot holds goes to the least
busy group, so two answers at once decode on two threads; a longer cached
prefix still wins over load (reusing a conversation's cache saves more)."""
from __future__ import annotations

import asyncio
import dataclasses

from services.llm.pool import InstancePool


@dataclasses.dataclass(eq=False)
class Slot:
    group: int
    cached: tuple[int, ...] = ()

    def cached_tokens(self):
        return self.cached


def test_ties_go_to_the_group_with_most_free_slots():
    slots = [Slot(0), Slot(0), Slot(1), Slot(1)]
    pool = InstancePool(slots, max_waiting=0, wait_timeout_s=1.0)

    async def main():
        a = await pool.checkout([1, 2])
        b = await pool.checkout([1, 2])
        return a, b

    a, b = asyncio.run(main())
    assert {a.group, b.group} == {0, 1}


def test_a_cached_prefix_beats_a_less_busy_group():
    slots = [Slot(0, (7, 8, 9)), Slot(1), Slot(1)]   # group 1 has more free slots
    pool = InstancePool(slots, max_waiting=0, wait_timeout_s=1.0)
    assert pool.try_checkout([7, 8, 9, 10]) is slots[0]


def test_a_new_conversation_does_not_evict_another_conversations_history():
    # Every slot holds the system prompt (1, 2); slot 0 also holds a long
    # conversation. A new conversation shares only the system prompt with each:
    # it takes the slot that loses least, so the long history stays cached.
    system = (1, 2)
    slots = [Slot(0, system + tuple(range(100, 160))), Slot(1, system + (5,)), Slot(0, system)]
    pool = InstancePool(slots, max_waiting=0, wait_timeout_s=1.0)
    assert pool.try_checkout([1, 2, 9, 9]) is slots[2]
    assert pool.try_checkout([1, 2, 8]) is slots[1]
    # ...and that conversation's next turn still finds its history.
    assert pool.try_checkout(list(system + tuple(range(100, 170)))) is slots[0]


def test_an_answer_waits_briefly_for_the_busy_instance_holding_its_conversation():
    conv = tuple(range(1, 200))
    slots = [Slot(0, conv), Slot(0), Slot(1)]
    pool = InstancePool(slots, max_waiting=4, wait_timeout_s=1.0, affinity_wait_s=0.5)

    async def main():
        prefill = pool.try_checkout(list(conv))          # its own prefill holds the cache
        assert prefill is slots[0]
        answer = asyncio.create_task(pool.checkout(list(conv) + [7]))
        await asyncio.sleep(0.05)
        assert not answer.done() and len(pool.idle()) == 2   # the free ones stay free for others
        pool.release(prefill)
        return await answer

    assert asyncio.run(main()) is slots[0]


def _answer_during_a_prefill(affinity_wait_s: float, wait_s: float):
    """A prefill evaluating a long prompt (promised to the pool), an answer
    with that prompt checked out meanwhile; after ``wait_s`` the answer must
    still be waiting, then the prefill ends. Returns (pool, prefill, got)."""
    system, passages = (1, 2), tuple(range(100, 300))
    slots = [Slot(0, system), Slot(1, system)]
    pool = InstancePool(slots, max_waiting=4, wait_timeout_s=5.0, affinity_wait_s=affinity_wait_s)

    async def main():
        prefill = pool.try_checkout(list(system + passages))
        pool.promise(prefill, list(system + passages))
        answer = asyncio.create_task(pool.checkout(list(system + passages) + [7]))
        await asyncio.sleep(wait_s)
        assert not answer.done()
        prefill.cached = system + passages          # the evaluation ended
        pool.release(prefill)
        return prefill, await answer

    return (pool, *asyncio.run(main()))


def test_an_answer_waits_for_the_instance_still_evaluating_its_prefill():
    """A prefill's evaluation is one llama.cpp batch: until it ends, the
    instance's cache does not show it. The prompt it promised counts."""
    pool, prefill, got = _answer_during_a_prefill(affinity_wait_s=0.5, wait_s=0.05)
    assert got is prefill
    # Released, its promise is gone: only what it holds counts.
    assert pool._promised == {}


def test_an_answer_waits_for_its_prefill_to_the_end_past_the_affinity_bound():
    _, prefill, got = _answer_during_a_prefill(affinity_wait_s=0.05, wait_s=0.3)   # six times the bound
    assert got is prefill


def test_the_wait_for_a_busy_cache_is_bounded_then_a_free_instance_is_taken():
    conv = tuple(range(1, 200))
    slots = [Slot(0, conv), Slot(1)]
    pool = InstancePool(slots, max_waiting=4, wait_timeout_s=1.0, affinity_wait_s=0.05)

    async def main():
        held = pool.try_checkout(list(conv))
        got = await pool.checkout(list(conv) + [7])
        assert held is slots[0]
        return got

    assert asyncio.run(main()) is slots[1]


def test_a_short_shared_prefix_is_not_worth_waiting_for():
    slots = [Slot(0, (1, 2, 3)), Slot(1)]
    pool = InstancePool(slots, max_waiting=4, wait_timeout_s=1.0, affinity_wait_s=5.0)

    async def main():
        pool.try_checkout([1, 2, 3])
        return await asyncio.wait_for(pool.checkout([1, 2, 3, 4]), 1.0)

    assert asyncio.run(main()) is slots[1]


def test_a_prefill_never_evicts_another_conversations_history():
    system = (1, 2)
    other = Slot(0, system + tuple(range(100, 160)))     # someone else's conversation
    own = Slot(1, system + (5, 6, 7))
    pool = InstancePool([other, own], max_waiting=4, wait_timeout_s=1.0)
    assert pool.try_checkout([1, 2, 5, 6, 7, 8], max_evict=8) is own   # extends its own cache
    # Its own instance is busy now: the only free one holds another history.
    assert pool.try_checkout([1, 2, 5, 6, 7, 8, 9], max_evict=8) is None
    assert pool.idle() == [other]
    # A cold instance (or one holding little beyond the shared prompt) is fine.
    cold = InstancePool([Slot(0, system)], max_waiting=4, wait_timeout_s=1.0)
    assert cold.try_checkout([1, 2, 3], max_evict=8) is not None


def test_a_prefill_may_replace_what_its_own_conversation_left_but_not_anothers():
    system = (1, 2)
    history = tuple(range(10, 40))
    passages = tuple(range(500, 560))           # the last turn's quoted passages, 60 tokens
    mine = Slot(0, system + history + passages)  # left by this conversation's answer
    cold = Slot(1, system)
    pool = InstancePool([mine, cold], max_waiting=4, wait_timeout_s=1.0)

    async def answered(slot_wanted, conversation):
        inst = await pool.checkout(list(slot_wanted.cached), conversation=conversation)
        pool.release(inst)
        return inst

    assert asyncio.run(answered(mine, "alice")) is mine and pool.owner(mine) == "alice"
    # The warm-up after the answer: the history without the passages (60 tokens lost).
    warm = list(system + history + (7, 8, 9))
    assert pool.try_checkout(warm, max_evict=8, conversation="bob") is cold   # not bob's to evict
    pool.release(cold)
    assert pool.try_checkout(warm, max_evict=8) is cold                       # unknown: nor evicted
    pool.release(cold)
    got = pool.try_checkout(warm, max_evict=8, conversation="alice")
    assert got is mine and pool.owner(mine) == "alice"                       # her own cache, 30 reused
    pool.release(mine)
    # Once another conversation's request took it, it is that one's.
    mine.cached = system + (90, 91)
    assert asyncio.run(answered(mine, "bob")) is mine
    mine.cached = system + tuple(range(200, 260))
    assert pool.try_checkout(list(system + (3,)), max_evict=8, conversation="alice") is cold
