"""Invariant: a stream keeper backs off while a service keeps refusing its
stream, even when the refusal comes only on the first read (the ASR at its
maximum of streams accepts the call, then refuses); the session hears of the
outage once, and the backoff starts over only after a stream proved healthy
(delivered an item, or stayed open a while)."""
from __future__ import annotations

import asyncio

from services.gateway.backends.types import BackendError
from services.gateway.streams import StreamKeeper


class VirtualClock:
    def __init__(self) -> None:
        self.t = 0.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    async def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.t += s
        await asyncio.sleep(0)


class Client:
    name, address = "asr", "a:1"

    async def ready(self) -> bool:
        return True


class Stream:
    """Yields its items (advancing the clock by ``lives_s`` first), then fails."""

    def __init__(self, clock: VirtualClock, items: list[str], lives_s: float) -> None:
        self.clock, self.items, self.lives_s = clock, items, lives_s

    async def results(self):
        self.clock.t += self.lives_s
        for item in self.items:
            yield item
        raise BackendError("asr", "a:1", "resource_exhausted: ASR is serving its maximum of 8 streams")

    async def close(self) -> None: ...


async def _run(plan: list[tuple[list[str], float]]) -> tuple[VirtualClock, list[bool], list[str]]:
    """Open one stream per plan entry; stop once the plan is used up."""
    clock = VirtualClock()
    downs: list[bool] = []
    got: list[str] = []
    todo = list(plan)

    async def open_stream() -> Stream:
        if not todo:
            raise asyncio.CancelledError
        items, lives = todo.pop(0)
        return Stream(clock, items, lives)

    async def on_item(item: str) -> None:
        got.append(item)

    keeper = StreamKeeper(Client(), open_stream, lambda s: s.results(), on_item, lambda s: None,
                          lambda exc, first: downs.append(first), clock, max_backoff_s=4.0)
    try:
        await keeper.run()
    except asyncio.CancelledError:
        pass
    return clock, downs, got


async def test_refused_on_the_first_read_backs_off_and_reports_once():
    clock, downs, _ = await _run([([], 0.0)] * 7)
    assert clock.sleeps == [0.25, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert downs == [True] + [False] * 6


async def test_a_stream_that_delivered_starts_the_backoff_over():
    plan = [([], 0.0), ([], 0.0), ([], 0.0), (["hello"], 0.0), ([], 0.0)]
    clock, downs, got = await _run(plan)
    assert got == ["hello"]
    assert clock.sleeps == [0.25, 0.5, 1.0, 0.25, 0.5]
    assert downs == [True, False, False, True, False]


async def test_a_stream_quiet_but_open_a_while_counts_as_recovered():
    plan = [([], 0.0), ([], 0.0), ([], 30.0), ([], 0.0)]
    clock, downs, _ = await _run(plan)
    assert clock.sleeps == [0.25, 0.5, 0.25, 0.5]
    assert downs == [True, False, True, False]
