"""The virtual clock wakes sleepers exactly at their deadlines and in order, so
turn-taking tests can assert event times without real sleeps."""
from __future__ import annotations

import asyncio

from common.clock import VirtualClock


async def test_sleepers_wake_in_deadline_order_at_exact_times():
    clock = VirtualClock()
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, delay: float) -> None:
        await clock.sleep(delay)
        woke.append((name, round(clock.now(), 6)))

    tasks = [asyncio.create_task(sleeper("b", 0.5)), asyncio.create_task(sleeper("a", 0.2))]
    await clock.advance(0.1)
    assert woke == []
    await clock.advance(1.0)
    await asyncio.gather(*tasks)
    assert woke == [("a", 0.2), ("b", 0.5)]


async def test_cancelled_sleeper_does_not_break_advance():
    clock = VirtualClock()
    t = asyncio.create_task(clock.sleep(1.0))
    await asyncio.sleep(0)
    t.cancel()
    await clock.advance(2.0)
    assert t.cancelled() and clock.now() == 2.0
