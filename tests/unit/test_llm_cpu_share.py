"""Threads per prompt piece from what the rest of the machine wants
(services/llm/cpu_share.py), on a scripted machine: a virtual clock, the
machine's normal-priority CPU seconds and the evaluating thread's own."""
from __future__ import annotations

import pytest

from services.llm import cpu_share
from services.llm.cpu_share import PromptThreads, normal_priority_busy_s


class Machine:
    """Two cores; ``others`` cores wanted at normal priority besides us.
    Prompt speed (tokens/s) as measured on the 2-core host: alone two
    threads ~510, one ~270; beside a busy process two ~120 (each barrier
    waits for the parked thread), one ~265."""

    def __init__(self) -> None:
        self.t = 100.0
        self.busy = 0.0        # machine CPU seconds at normal priority
        self.mine = 0.0        # the evaluating thread's CPU seconds
        self.others = 0.0
        self.niced = 0.0       # cores wanted at nice 19: /proc/stat's nice column
        self.slowdown = 1.0    # the host itself slower (a noisy neighbour's VM)
        self.lucky = False     # the next piece unusually fast

    def piece(self, threads: int, tokens: int = 64) -> None:
        want = threads + self.others
        share = min(1.0, 2 / want) if want else 1.0
        if threads == 1:
            rate: float = 270 if self.others < 1.5 and not self.niced else 200
        else:
            rate = 510 if self.others < 0.1 else 120 if self.others >= 0.9 else 380
            rate *= 0.8 if self.niced else 1.0
        rate = 1000 if self.lucky else rate / self.slowdown
        self.lucky = False
        wall = tokens / rate
        self.t += wall
        self.mine += share * wall
        self.busy += min(2.0, want) * wall

    def idle(self, s: float) -> None:
        self.t += s
        self.busy += self.others * s


def chooser(m: Machine, max_threads: int = 2) -> PromptThreads:
    return PromptThreads(max_threads, cores=2, busy_s=lambda: m.busy, thread_cpu_s=lambda: m.mine,
                         clock=lambda: m.t, priority=lambda: 0)


def run_piece(th: PromptThreads, m: Machine, tokens: int = 64) -> int:
    n = th.choose()
    piece = th.begin(n)
    m.piece(n, tokens)
    th.end(piece, tokens)
    return n


def test_alone_two_threads_throughout() -> None:
    m = Machine()
    th = chooser(m)
    assert [run_piece(th, m) for _ in range(5)] == [2, 2, 2, 2, 2]


def test_a_busy_process_at_normal_priority_leaves_one_thread_until_it_ends() -> None:
    m = Machine()
    th = chooser(m)
    assert run_piece(th, m) == 2     # sets the bar: 510 tokens/s
    m.others = 1.0                   # an ASR final starts
    assert run_piece(th, m) == 2     # measured during this piece (slow, and a core wanted)...
    assert [run_piece(th, m) for _ in range(3)] == [1, 1, 1]   # ...so one thread, while it lasts
    m.others = 0.0                   # the final is done
    assert run_piece(th, m) == 1     # the one-thread piece sees a free core
    assert run_piece(th, m) == 2


@pytest.mark.parametrize("change, value", [
    # Half a core wanted by others (a gateway, short bursts): two threads
    # still beat one, and the pieces are not slow enough to say otherwise.
    ("others", 0.7),
    # Work at nice 19 lands in /proc/stat's nice column, which is not read;
    # the pieces are a little slower, not half.
    ("niced", 1.0),
    # Slow, but nobody else wanted the cores (the host itself was slow):
    # one thread would only be slower still. Counting the evaluator's
    # time as one thread's instead of two would see a busy core here.
    ("slowdown", 3.0),
])
def test_loads_that_keep_two_threads(change: str, value: float) -> None:
    m = Machine()
    th = chooser(m)
    run_piece(th, m)
    setattr(m, change, value)
    assert [run_piece(th, m) for _ in range(3)] == [2, 2, 2]


def test_a_one_thread_piece_takes_two_when_over_half_a_core_is_free() -> None:
    m = Machine()
    th = chooser(m)
    run_piece(th, m)
    m.others = 1.0
    run_piece(th, m)
    assert run_piece(th, m) == 1
    m.others = 0.45                  # the competitor mostly done
    assert run_piece(th, m) == 1
    assert run_piece(th, m) == 2


def test_the_best_speed_decays_so_one_lucky_piece_does_not_set_the_bar() -> None:
    m = Machine()
    th = chooser(m)
    m.lucky = True
    run_piece(th, m)                 # 1000 tokens/s once
    for _ in range(60):
        run_piece(th, m)             # 510 alone since
    m.others = 0.7                   # a light load: 380 tokens/s, not slow against 510
    assert [run_piece(th, m) for _ in range(3)] == [2, 2, 2]


def test_the_first_piece_after_a_pause_takes_every_thread() -> None:
    m = Machine()
    th = chooser(m)
    run_piece(th, m)
    m.others = 1.0
    run_piece(th, m)
    assert run_piece(th, m) == 1
    m.idle(1.0)            # the run ended; what ran before the next says little about it
    assert th.choose() == 2


def test_short_pieces_are_not_judged_slow() -> None:
    m = Machine()
    th = chooser(m)
    run_piece(th, m)
    m.others = 1.0
    assert run_piece(th, m, tokens=8) == 2
    assert run_piece(th, m) == 2     # the 8-token piece said nothing about speed


def test_one_thread_setting_and_no_proc_stat_never_adapt() -> None:
    m = Machine()
    assert not chooser(m, max_threads=1).enabled
    th = PromptThreads(2, cores=2, busy_s=lambda: None, priority=lambda: 0)
    assert not th.enabled and th.choose() == 2 and th.begin(2) is None


def test_a_niced_service_does_not_adapt() -> None:
    # Its own time would land in the nice column, unread: others would look idle.
    m = Machine()
    assert not PromptThreads(2, cores=2, busy_s=lambda: m.busy, priority=lambda: 5).enabled


def test_reads_the_cpus_this_process_may_use_from_proc_stat(tmp_path) -> None:
    f = tmp_path / "stat"
    f.write_text("cpu  100 50 20 900 5 1 2 3 0 0\n"
                 "cpu0 10 50 20 400 5 1 2 3 0 0\n"
                 "cpu1 90 0 0 500 0 0 0 0 0 0\n"
                 "intr 12345\n")
    hz = cpu_share._HZ
    assert normal_priority_busy_s(str(f), frozenset({0})) == (10 + 20 + 1 + 2 + 3) / hz   # nice (50) left out
    assert normal_priority_busy_s(str(f), frozenset({0, 1})) == (36 + 90) / hz
    assert normal_priority_busy_s(str(f), frozenset({5})) is None
    assert normal_priority_busy_s(str(tmp_path / "none")) is None
    assert normal_priority_busy_s() is not None          # this machine's own
