"""How many threads a run of prompt tokens gets: as many cores as the rest of
the machine left free during the previous piece (issues #11, #12).

Why: llama.cpp's CPU build splits every matrix product of a batch among its
threads (OpenMP) and waits for all of them at a barrier. Alone on the
2-core host two threads evaluate 240 Q8_0 prompt tokens in ~465 ms, one in
~890 ms; but with one busy process beside them at the same priority (an
ASR final, TTS, another process's prompt) two threads took 1690-2776 ms and
one ~910 ms: each barrier waits for the thread the scheduler parked
(docs/benchmarks.md, "two llama.cpp threads under contention"). Work at a
lower priority (nice 19, the interims) barely slows two threads (600-757
ms) and does slow one (946-1236 ms). So the right count depends on what
else wants the cores at normal priority, from one moment to the next.

How: around each piece, the CPU time the machine spent at normal priority
(``/proc/stat``: user, system, irq, softirq, steal; the ``nice`` column,
lower-priority work, is left out) minus what this evaluation's own threads
spent (the calling thread's CPU time times their count: they run in
lockstep) is what others wanted meanwhile; cores free = cores - others.
The next piece gets that many threads (rounded), with one exception: it
takes fewer threads than this one only when this piece also ran at under
half the best speed seen on that many threads, because a light load (a
gateway, a short burst) leaves two threads faster than one, as bursts in
`python -m bench prompt_threads` showed. A piece with none in the
``FRESH_S`` before it (a run's first, usually) gets the full count: what
ran before it (an ASR final just ended, its answer's prompt starting)
says little about what runs during it; a sampled window of the last
0.1-0.2 s did, measured on the stack, cost the answers' first pieces
(docs/benchmarks.md).

Cores are this process's (its CPU affinity) and so are the ``cpuN`` lines
read. Under a CPU quota without a cpuset the figures describe the whole
host and the count mostly stays at the setting. A service that runs niced
itself would find its own time in the ``nice`` column: it does not adapt.
One evaluator owns one chooser and calls it under its lock."""
from __future__ import annotations

import os
import time
from typing import Callable, Optional

# A piece that ended at most this long ago says what the next one should use.
FRESH_S = 0.3
# Cores free, rounded up from half a core: 1.5 free take two threads, 1.33
# (a busy process sharing both cores with two threads) one.
ROUND_UP = 0.5
# A piece slower than this share of the best seen on as many threads was
# held up (a busy process beside two threads: 0.17-0.35; a nice-19 one:
# 0.6-0.8; docs/benchmarks.md).
SLOW_SHARE = 0.5
# The best speed seen decays by this factor per piece on as many threads,
# so that one lucky piece does not set the bar for good.
DECAY = 0.98
# Pieces shorter than this say nothing about speed (fixed costs dominate).
MIN_JUDGED_TOKENS = 32

_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _priority() -> int:
    try:
        return os.getpriority(os.PRIO_PROCESS, 0)
    except (AttributeError, OSError):
        return 0


def _own_cpus() -> frozenset[int]:
    try:
        return frozenset(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return frozenset(range(os.cpu_count() or 1))


def normal_priority_busy_s(path: str = "/proc/stat", cpus: Optional[frozenset[int]] = None) -> Optional[float]:
    """CPU seconds ``cpus`` (default: those this process may run on) have
    spent at normal priority since boot, or None where there is no
    /proc/stat (then nothing adapts)."""
    cpus = _own_cpus() if cpus is None else cpus
    total, seen = 0, False
    try:
        with open(path, "rb") as f:
            for line in f:
                if not line.startswith(b"cpu"):
                    break
                fields = line.split()
                name = fields[0][3:]
                if not name.isdigit() or int(name) not in cpus or len(fields) < 9:
                    continue
                user, _nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[1:9])
                total += user + system + irq + softirq + steal
                seen = True
    except (OSError, ValueError):
        return None
    return total / _HZ if seen else None


class PromptThreads:
    """Chooses the thread count for each piece of prompt evaluation."""

    def __init__(self, max_threads: int, cores: Optional[int] = None,
                 busy_s: Callable[[], Optional[float]] = normal_priority_busy_s,
                 thread_cpu_s: Callable[[], float] = time.thread_time,
                 clock: Callable[[], float] = time.monotonic,
                 priority: Callable[[], int] = _priority) -> None:
        self.max_threads = max(1, max_threads)
        self.cores = cores or len(_own_cpus())
        self._busy_s, self._thread_cpu_s, self._clock = busy_s, thread_cpu_s, clock
        self._best: dict[int, float] = {}      # threads -> best tokens/s seen (decaying)
        # the last piece: when it ended and the threads it left for the next one
        self._piece_end = -1e9
        self._piece_choice = self.max_threads
        self.last_free = float(self.cores)
        self.enabled = self.max_threads > 1 and busy_s() is not None and priority() <= 0

    # -- around each piece ----------------------------------------------------
    def _for_free(self, others: float) -> int:
        free = self.cores - max(0.0, others)
        self.last_free = free       # for the debug log
        return max(1, min(self.max_threads, int(free + ROUND_UP)))

    def choose(self) -> int:
        """Threads for the piece about to run (then begin() with it)."""
        if not self.enabled:
            return self.max_threads
        return self._piece_choice if self._clock() - self._piece_end <= FRESH_S else self.max_threads

    def begin(self, n: int) -> Optional[tuple[int, float, float, float]]:
        """Before a piece on ``n`` threads; hand what it returns to end()
        (on the same thread: its CPU time is measured)."""
        busy = self._busy_s() if self.enabled else None
        return None if busy is None else (n, self._clock(), busy, self._thread_cpu_s())

    def end(self, piece: Optional[tuple[int, float, float, float]], tokens: int) -> None:
        """After the piece of ``tokens`` (evaluated: not after a failed
        decode): what others wanted meanwhile, and how fast it went,
        decide the next piece's threads."""
        if piece is None:
            return
        n, t0, b0, c0 = piece
        busy, now = self._busy_s(), self._clock()
        wall = now - t0
        if busy is None or wall <= 0:
            return
        mine = n * (self._thread_cpu_s() - c0)
        want = self._for_free((busy - b0 - mine) / wall)
        slow = False
        if tokens >= MIN_JUDGED_TOKENS:
            rate = tokens / wall
            best = max(rate, self._best.get(n, 0.0) * DECAY)
            self._best[n] = best
            slow = rate < SLOW_SHARE * best
        if want < n and not slow:
            want = n
        self._piece_end, self._piece_choice = now, want
