"""Threads per prompt piece from what the rest of the machine wants
(services/llm/cpu_share.py), on a scripted machine: a virtual clock, the
machine's normal-priority CPU seconds and the evaluating thread's own."""
from __future__ import annotations

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

    def piece(self, threads: int, tokens: int = 64) -> None:
        want = threads + self.others
        share = min(1.0, 2 / want) if want else 1.0
        if threads == 1:
            rate = 270 if self.others < 1.5 else 200
        else:
            rate = 510 if self.others < 0.1 else 120 if self.others >= 0.9 else 380
        wall = tokens / rate
        self.t += wall
        self.mine += share * wall
        self.busy += min(2.0, want) * wall

    def idle(self, s: float) -> None:
        self.t += s
        self.busy += self.others * s


def chooser(m: Machine, max_threads: int = 2) -> PromptThreads:
    return PromptThreads(max_threads, cores=2, busy_s=lambda: m.busy, thread_cpu_s=lambda: m.mine,
                         clock=lambda: m.t)


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


def test_a_light_load_keeps_two_threads() -> None:
    # Half a core wanted by others (a gateway, short bursts): two threads
    # still beat one, and the pieces are not slow enough to say otherwise.
    m = Machine()
    th = chooser(m)
    run_piece(th, m)
    m.others = 0.7
    assert [run_piece(th, m) for _ in range(3)] == [2, 2, 2]


def test_lower_priority_work_is_not_counted() -> None:
    # Work at nice 19 lands in /proc/stat's nice column, which is not read;
    # the pieces are a little slower, not half: two threads.
    m = Machine()
    th = chooser(m)
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
    th = PromptThreads(2, cores=2, busy_s=lambda: None)
    assert not th.enabled and th.choose() == 2 and th.begin(2) is None


def test_reads_this_machines_proc_stat(tmp_path) -> None:
    f = tmp_path / "stat"
    f.write_text("cpu  100 50 20 900 5 1 2 3 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n")
    hz = cpu_share._HZ
    assert normal_priority_busy_s(str(f)) == (100 + 20 + 1 + 2 + 3) / hz   # nice (50) left out
    assert normal_priority_busy_s(str(tmp_path / "none")) is None
