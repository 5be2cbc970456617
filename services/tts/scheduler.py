"""Process-wide scheduling of synthesis: urgent pieces first, across all streams.

Why: with one thread per synthesis, the later clauses of session A's answer
compete on equal terms with the first clause of session B's answer, and on a
2-core host B's listener hears the difference. Here every synthesis is cut
into pieces (one clause each) that run on a bounded set of CPU workers sized
to the host; when a worker frees, the next piece is the oldest urgent one,
else the oldest background one. A synthesis queues its next piece only when
its previous one is done, so a long background synthesis yields to an urgent
one between clauses, and syntheses of one class take turns clause by clause.

Clause-sized pieces are not preemptible, so an urgent clause arriving while
every worker is inside a background clause would wait for one of them
(measured on 2 cores: worse than plain time-sharing). So ``urgent_workers``
workers are kept for urgent work: background pieces run on the others only
(at least one), and a first clause finds a free worker at once unless other
urgent work holds them all.

A background piece that has waited ``max_background_wait_s`` goes before
urgent ones: a steady stream of urgent work then delays an answer's later
clauses by a bounded time instead of starving them.

``PieceQueue`` is the decision alone (no threads, no clock of its own: it is
handed the time), so its rules are tested as plain sequences of calls.
``Scheduler`` wraps it with the worker threads. No gRPC, no metrics library:
the service passes callbacks for queue depth and wait time."""
from __future__ import annotations

import collections
import dataclasses
import enum
import logging
import threading
import time
from typing import Callable, Protocol

from common.cores import host_cores

log = logging.getLogger(__name__)


class Priority(enum.IntEnum):
    """Lower value = served first. The wire's UNSPECIFIED maps to URGENT (convert.py)."""

    URGENT = 0       # a person is waiting for it now: an answer's first audio
    BACKGROUND = 1   # later clauses (they play after the first ones), bulk synthesis

    @property
    def label(self) -> str:
        return self.name.lower()


class Work(Protocol):
    """A synthesis as the scheduler sees it: a sequence of pieces."""

    def step(self) -> bool:
        """Run one piece (on a worker thread); True when more pieces remain."""

    def finish(self, error: BaseException | None) -> None:
        """Called exactly once, when no piece will run any more (done, cancelled,
        failed or shut down), from a worker thread or the canceller's thread."""


@dataclasses.dataclass(eq=False)
class Ticket:
    """One submitted synthesis: its class, and when its next piece was queued."""

    work: Work
    priority: Priority
    queued_at: float = 0.0
    cancelled: bool = False


class PieceQueue:
    """Two FIFO queues and the rule which piece goes next (not thread-safe)."""

    def __init__(self, max_background_wait_s: float = 1.0) -> None:
        self.max_background_wait_s = max_background_wait_s
        self._queues: dict[Priority, collections.deque[Ticket]] = {p: collections.deque() for p in Priority}

    def push(self, t: Ticket, now: float) -> None:
        t.queued_at = now
        self._queues[t.priority].append(t)

    def pop(self, now: float, background_ok: bool = True) -> Ticket | None:
        """The next piece to run; ``background_ok`` False when no worker may take
        background work now (the rest are kept for urgent work)."""
        urgent, background = self._queues[Priority.URGENT], self._queues[Priority.BACKGROUND]
        if not background_ok:
            background = collections.deque()
        if background and (not urgent or now - background[0].queued_at >= self.max_background_wait_s):
            return background.popleft()
        if urgent:
            return urgent.popleft()
        return None

    def remove(self, t: Ticket) -> bool:
        """Take a queued ticket out; False when it is not queued (running or done)."""
        try:
            self._queues[t.priority].remove(t)
            return True
        except ValueError:
            return False

    def depth(self, priority: Priority) -> int:
        return len(self._queues[priority])

    def drain(self) -> list[Ticket]:
        out = [t for q in self._queues.values() for t in q]
        for q in self._queues.values():
            q.clear()
        return out


class Scheduler:
    """Runs the pieces of every synthesis of the process on ``workers`` threads."""

    def __init__(self, workers: int = 0, max_background_wait_s: float = 1.0, urgent_workers: int = 1,
                 clock: Callable[[], float] = time.monotonic,
                 on_wait: Callable[[Priority, float], None] | None = None,
                 on_depth: Callable[[Priority, int], None] | None = None) -> None:
        self.workers = workers if workers > 0 else host_cores()
        self.background_limit = max(1, self.workers - max(0, urgent_workers))
        self._background_running = 0
        self._queue = PieceQueue(max_background_wait_s)
        self._clock = clock
        self._on_wait = on_wait or (lambda p, s: None)
        self._on_depth = on_depth or (lambda p, n: None)
        self._cond = threading.Condition()
        self._closed = False
        self._threads = [threading.Thread(target=self._worker, name=f"tts-{i}", daemon=True)
                         for i in range(self.workers)]
        for th in self._threads:
            th.start()

    def depth(self, priority: Priority) -> int:
        with self._cond:
            return self._queue.depth(priority)

    def submit(self, work: Work, priority: Priority) -> Ticket:
        t = Ticket(work, priority)
        with self._cond:
            if self._closed:
                raise RuntimeError("the TTS scheduler is shut down")
            self._push(t)
        return t

    def cancel(self, t: Ticket) -> None:
        """No further piece of ``t`` runs. A queued one leaves the queue now; a
        running one ends at its own cancel check (the work's flag)."""
        with self._cond:
            t.cancelled = True
            removed = self._queue.remove(t)
            if removed:
                self._on_depth(t.priority, self._queue.depth(t.priority))
        if removed:
            t.work.finish(None)

    def close(self) -> None:
        """Stop the workers after their current piece; queued work is finished unrun."""
        with self._cond:
            self._closed = True
            pending = self._queue.drain()
            for p in Priority:
                self._on_depth(p, 0)
            self._cond.notify_all()
        for t in pending:
            t.work.finish(None)

    def _push(self, t: Ticket) -> None:
        self._queue.push(t, self._clock())
        self._on_depth(t.priority, self._queue.depth(t.priority))
        self._cond.notify()

    def _next(self) -> Ticket | None:
        with self._cond:
            while not self._closed:
                t = self._queue.pop(self._clock(), self._background_running < self.background_limit)
                if t is not None:
                    if t.priority is Priority.BACKGROUND:
                        self._background_running += 1
                    self._on_depth(t.priority, self._queue.depth(t.priority))
                    return t
                self._cond.wait()
            return None

    def _worker(self) -> None:
        while (t := self._next()) is not None:
            self._on_wait(t.priority, max(0.0, self._clock() - t.queued_at))
            more, error = False, None
            try:
                more = t.work.step()
            except BaseException as exc:  # noqa: BLE001 - handed to the stream, which re-raises it
                error = exc
            with self._cond:
                if t.priority is Priority.BACKGROUND:
                    self._background_running -= 1
                    self._cond.notify_all()   # a worker may be idle only because of the limit
                requeue = more and error is None and not t.cancelled and not self._closed
                if requeue:
                    self._push(t)
            if not requeue:
                t.work.finish(error)
