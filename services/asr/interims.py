"""Which stream's interim pass runs next, process-wide (sans-IO: no threads,
no tasks, no model; the clock is injected).

Why: every stream re-decodes its whole growing utterance for each interim, so
with several people talking the interims alone can fill the cores, and each
stream queued its own passes behind everyone else's, first come first served,
on audio that was already stale when the pass finally ran. Here:

- a stream that wants an interim registers a request; it holds at most one
  (asking again replaces it), and the audio is taken when the pass *starts*,
  so a late pass covers everything that arrived while it waited;
- when a slot is free, the stream whose oldest unseen audio is oldest (its
  last interim is the oldest: the most new speech unseen) goes first, so
  streams take turns instead of one stream's requests starving another's;
- at most ``max_running`` interim passes run at once, and a pass may carry
  up to ``max_batch`` streams (the oldest ``max_batch`` ready ones): the
  model decodes their utterances as one batch (batching.py), which costs far
  less than as many separate passes, so under load each stream's cadence
  stretches much less;
- no interim starts while a final (or flush) pass is waiting or running: the
  pass the user is waiting for never shares the cores with background work
  that could have waited. (A pass cannot be interrupted once it runs; the
  niced interim model copy covers that case, engine.py.)

Under load the cadence stretches by itself: with N streams wanting interims
and one slot, each gets a turn every N / max_batch passes. The session reports the
effective interval (metrics.py), and this module the queue length.

Everything runs on the event loop's thread (the sessions call in, and a
granted request's ``start`` is called synchronously), so there is no lock.
"""
from __future__ import annotations

import dataclasses
import itertools
from typing import Callable, Hashable

from common.clock import Clock, MonotonicClock
from services.asr.observers import NullQueueObserver, QueueObserver


Start = Callable[[], bool]
"""Called when the request is granted; returns False if the stream no longer
needs the pass (then the slot is not taken)."""


@dataclasses.dataclass
class _Request:
    since: float        # when the oldest audio this pass would be the first to see arrived
    seq: int            # ties: the earlier request first
    asked_at: float     # clock time of the first ask (queue wait)
    start: Start


class InterimScheduler:
    """Grants interim passes: one slot per concurrent pass, oldest unseen audio first."""

    def __init__(self, max_running: int = 1, clock: Clock | None = None,
                 observer: QueueObserver | None = None, max_batch: int = 1) -> None:
        if max_running < 1:
            raise ValueError(f"max_running must be at least 1, got {max_running}")
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.max_running = max_running
        self.max_batch = max_batch
        self.clock = clock or MonotonicClock()
        self.observer = observer or NullQueueObserver()
        self._queue: dict[Hashable, _Request] = {}
        self._running: dict[Hashable, int] = {}   # stream -> the pass it rides in
        self._finals = 0
        self._seq = itertools.count()
        self._passes = itertools.count(1)

    # -- what the sessions tell us -------------------------------------------------------

    def want(self, stream: Hashable, since: float, start: Start) -> None:
        """``stream`` wants an interim of its audio since ``since`` (clock time).
        Replaces the stream's queued request; a stream whose pass is running
        may queue its next one (it starts after the running one is finished)."""
        old = self._queue.get(stream)
        if old is not None:
            old.since, old.start = min(old.since, since), start
        else:
            self._queue[stream] = _Request(since, next(self._seq), self.clock.now(), start)
        self._pump()

    def withdraw(self, stream: Hashable) -> None:
        """The stream's queued request is moot (its utterance ended, it closed)."""
        if self._queue.pop(stream, None) is not None:
            self._report()

    def finished(self, stream: Hashable) -> None:
        """The stream's interim pass is over (sent, failed or cancelled). A
        batched pass frees its slot when the last of its streams is done."""
        self._running.pop(stream, None)
        self._pump()

    def pass_of(self, stream: Hashable) -> int | None:
        """The pass a running stream rides in: streams granted together (in
        one ``_pump``, the same id) are to be decoded as one batch. Set before
        the stream's ``start`` is called, so ``start`` can read it."""
        return self._running.get(stream)

    def final_started(self) -> None:
        """A final (or flush) pass was handed to the model: interims wait."""
        self._finals += 1

    def final_finished(self) -> None:
        self._finals -= 1
        assert self._finals >= 0, "final_finished without final_started"
        self._pump()

    # -- state, for metrics and tests ----------------------------------------------------

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def running(self) -> int:
        """Streams whose interim pass runs."""
        return len(self._running)

    @property
    def passes(self) -> int:
        """Passes running (each carries one stream or a batch of them)."""
        return len(set(self._running.values()))

    @property
    def finals(self) -> int:
        return self._finals

    # -- internals -----------------------------------------------------------------------

    def _pump(self) -> None:
        while self._finals == 0 and self.passes < self.max_running:
            ready = sorted((r.since, r.seq, s) for s, r in self._queue.items()
                           if s not in self._running)
            if not ready:
                break
            pass_id = next(self._passes)
            for _, _, stream in ready:
                if sum(1 for p in self._running.values() if p == pass_id) >= self.max_batch:
                    break
                req = self._queue.pop(stream)
                self._running[stream] = pass_id
                try:
                    started = req.start()
                except BaseException:
                    del self._running[stream]   # no slot kept by a pass that never started
                    raise
                if started:
                    self.observer.interim_waited(self.clock.now() - req.asked_at)
                else:
                    del self._running[stream]
        self._report()

    def _report(self) -> None:
        self.observer.interim_queue(len(self._queue), self.passes)
