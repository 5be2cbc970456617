"""Interim passes of several streams decoded as one batch (asyncio side).

The scheduler (interims.py) grants up to ``max_batch`` streams one pass
together and gives them one pass id. Each stream's interim task then asks
here for its transcript with that id; the requests of one pass arrive in the
same turn of the event loop (the scheduler starts them all in one go, and
each task asks on its first step), so the batcher collects them until the
loop comes round (``call_soon``) and hands them to the engine as one batch,
on the interim pool. Each stream gets its own result or its own exception.

Why: CTranslate2's Whisper ``generate`` decodes a batch of feature windows
at once, and on a GPU a batch of streams costs about what one does: that is
how one card serves many conversations. On a CPU the decoder gains (a token
step for four streams reads the weights once) but the encoder does not, so a
batch of four costs 15-39 % less CPU than four passes
(``bench/bench_asr_batch.py``) and yet each stream's interim arrives about 3x
later, since the batch runs as long as most of the four passes together
(services/asr/README.md, "Batching"). Hence ``ASR_INTERIM_BATCH`` is 1 on a
CPU by default, and larger on a GPU.

A stream that goes away while its batch runs does not stop the batch: its
result is dropped (a pass cannot be interrupted, batched or not).
"""
from __future__ import annotations

import asyncio
import dataclasses
import threading
from concurrent.futures import Executor
from typing import Protocol, Sequence

import numpy as np

from services.asr.results import Transcript
from services.asr.windows import FRAMES_PER_SECOND, HOP, window_frames

BATCH_SPAN_S = 2.0           # widest spread of encoder windows one interim batch pads over


def window_groups(indices: list[int], sizes: Sequence[int], pad_s: float) -> list[list[int]]:
    """Groups of streams (``indices`` into ``sizes``, samples of audio each)
    decoded together. A batch encodes every window at its longest one's
    length, and encoder time grows with the window while batching saves only
    decoder time, so a group spans at most ``BATCH_SPAN_S`` of window:
    utterances of 1.5 and 6 s go apart (bench/bench_asr_batch.py measures both)."""
    order = sorted(indices, key=lambda i: sizes[i])
    groups: list[list[int]] = []
    for i in order:
        window = window_frames(sizes[i] // HOP, pad_s)
        if groups and window - window_frames(sizes[groups[-1][0]] // HOP, pad_s) \
                <= BATCH_SPAN_S * FRAMES_PER_SECOND:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


class BatchTranscriber(Protocol):
    """What the batcher needs from a model (the real engine or a fake)."""

    interim_pool: Executor

    def transcribe_interims(self, items: Sequence["InterimItem"]) -> list[Transcript | Exception]: ...


class BatchObserver(Protocol):
    def interim_batch(self, streams: int) -> None: ...


@dataclasses.dataclass
class InterimItem:
    audio: np.ndarray
    language: str | None
    cancel: threading.Event


@dataclasses.dataclass
class _Waiting:
    item: InterimItem
    future: asyncio.Future


class InterimBatcher:
    """Collects the interim requests of one scheduler pass and runs them as one batch."""

    def __init__(self, engine: BatchTranscriber, pool: Executor | None = None,
                 observer: BatchObserver | None = None) -> None:
        """``pool``: where batches run (default: the engine's interim pool, looked up
        per batch, since the service builds the engine after the servicer).
        ``observer``: told each batch's size (metrics.py)."""
        self.engine, self.pool, self.observer = engine, pool, observer
        self._pending: dict[int, list[_Waiting]] = {}

    async def interim(self, pass_id: int, audio: np.ndarray, language: str | None,
                      cancel: threading.Event) -> Transcript:
        """This stream's transcript from the batch of pass ``pass_id``; raises
        what the engine raised for this stream (Cancelled, Unreliable, ...)."""
        loop = asyncio.get_running_loop()
        waiting = self._pending.get(pass_id)
        if waiting is None:
            waiting = self._pending[pass_id] = []
            loop.call_soon(self._launch, pass_id)
        fut: asyncio.Future = loop.create_future()
        waiting.append(_Waiting(InterimItem(audio, language, cancel), fut))
        return await fut

    def _launch(self, pass_id: int) -> None:
        waiting = self._pending.pop(pass_id)
        try:
            if self.observer is not None:
                self.observer.interim_batch(len(waiting))
            loop = asyncio.get_running_loop()
            done = loop.run_in_executor(self.pool or self.engine.interim_pool,
                                        self.engine.transcribe_interims, [w.item for w in waiting])
        except Exception as exc:   # e.g. the pool shut down: every stream of the pass hears of it
            _settle(waiting, [exc] * len(waiting))
            return

        def deliver(f: asyncio.Future) -> None:
            if f.cancelled():
                for w in waiting:
                    if not w.future.done():
                        w.future.cancel()
                return
            exc = f.exception()
            results: list = [exc] * len(waiting) if exc is not None else list(f.result())
            if len(results) != len(waiting):   # never leave a stream waiting (its slot with it)
                short = RuntimeError(f"interim batch of {len(waiting)} streams returned "
                                     f"{len(results)} results")
                results = (results + [short] * len(waiting))[:len(waiting)]
            _settle(waiting, results)

        done.add_done_callback(deliver)


def _settle(waiting: list[_Waiting], results: list) -> None:
    for w, result in zip(waiting, results):
        if w.future.done():
            continue   # that stream's task was cancelled meanwhile
        if isinstance(result, BaseException):
            w.future.set_exception(result)
        else:
            w.future.set_result(result)
