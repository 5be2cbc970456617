"""Invariants of the interim batcher (batching.py) on a scripted engine: the
requests of one scheduler pass, made in the same turn of the event loop, go
to the engine as one batch and each stream gets its own result or its own
exception; requests of different passes are separate batches; a stream that
goes away while its batch runs does not disturb the others."""
from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from services.asr.batching import InterimBatcher, InterimItem
from services.asr.engine import Unreliable
from services.asr.results import Transcript


class ScriptedEngine:
    """Answers each item with the text 'n=<samples>', or the exception scripted for that size."""

    def __init__(self, raises: dict[int, Exception] | None = None,
                 gate: threading.Event | None = None) -> None:
        self.batches: list[list[int]] = []
        self.raises = raises or {}
        self.gate = gate

    def transcribe_interims(self, items: list[InterimItem]) -> list[Transcript | Exception]:
        if self.gate is not None:
            self.gate.wait(5)
        self.batches.append([it.audio.size for it in items])
        return [self.raises.get(it.audio.size, Transcript(f"n={it.audio.size}")) for it in items]


def audio(n: int) -> np.ndarray:
    return np.zeros(n, np.float32)


@pytest.fixture
def pool():
    p = ThreadPoolExecutor(2)
    yield p
    p.shutdown(wait=True)


async def test_one_pass_is_one_batch_and_each_stream_gets_its_own_result(pool) -> None:
    eng = ScriptedEngine(raises={30: Unreliable("loop loop")})
    b = InterimBatcher(eng, pool)
    never = threading.Event()
    results = await asyncio.gather(
        *(b.interim(7, audio(n), "en", never) for n in (10, 20, 30)),
        b.interim(8, audio(40), "en", never), return_exceptions=True)
    assert sorted(map(sorted, eng.batches)) == [[10, 20, 30], [40]]
    assert [getattr(r, "text", None) for r in results] == ["n=10", "n=20", None, "n=40"]
    assert isinstance(results[2], Unreliable)          # that stream's, not the others'


async def test_tasks_granted_together_batch_even_though_each_asks_on_its_own_step(pool) -> None:
    eng = ScriptedEngine()
    b = InterimBatcher(eng, pool)
    never = threading.Event()
    tasks = [asyncio.create_task(b.interim(1, audio(n), "en", never)) for n in (1, 2, 3)]
    assert [t.text for t in await asyncio.gather(*tasks)] == ["n=1", "n=2", "n=3"]
    assert eng.batches == [[1, 2, 3]]


async def test_a_stream_gone_while_its_batch_runs_leaves_the_others_their_results(pool) -> None:
    gate = threading.Event()
    eng = ScriptedEngine(gate=gate)
    b = InterimBatcher(eng, pool)
    never = threading.Event()
    gone = asyncio.create_task(b.interim(1, audio(5), "en", never))
    stays = asyncio.create_task(b.interim(1, audio(6), "en", never))
    await asyncio.sleep(0.02)
    gone.cancel()
    gate.set()
    assert (await stays).text == "n=6"
    assert gone.cancelled() and eng.batches == [[5, 6]]


async def test_an_engine_failure_reaches_every_stream_of_the_batch(pool) -> None:
    class Broken:
        def transcribe_interims(self, items):
            raise RuntimeError("model exploded")

    b = InterimBatcher(Broken(), pool)
    never = threading.Event()
    results = await asyncio.gather(*(b.interim(3, audio(n), "en", never) for n in (1, 2)),
                                   return_exceptions=True)
    assert all(isinstance(r, RuntimeError) and "exploded" in str(r) for r in results)


async def test_a_batch_that_cannot_start_or_answers_short_fails_its_streams_instead_of_hanging(pool) -> None:
    # A stream left waiting would keep its interim slot for good: every stream's interims stop.
    class Short(ScriptedEngine):
        def transcribe_interims(self, items):
            return super().transcribe_interims(items)[:1]

    never = threading.Event()
    b = InterimBatcher(Short(), pool)
    short = await asyncio.wait_for(asyncio.gather(*(b.interim(1, audio(n), "en", never) for n in (1, 2)),
                                                  return_exceptions=True), 5)
    assert short[0].text == "n=1" and isinstance(short[1], RuntimeError) and "1 results" in str(short[1])
    closed = ThreadPoolExecutor(1)
    closed.shutdown()
    b = InterimBatcher(ScriptedEngine(), closed)
    gone = await asyncio.wait_for(asyncio.gather(*(b.interim(2, audio(n), "en", never) for n in (1, 2)),
                                                 return_exceptions=True), 5)
    assert all(isinstance(r, RuntimeError) for r in gone), gone
