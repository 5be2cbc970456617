"""Invariant: synthesis work of all streams runs urgent-first. A queued urgent
piece goes before every queued background piece, whenever they arrived; a
long background synthesis yields to an urgent one between clauses; one
worker is kept for urgent work, so an urgent piece starts at once even while
background pieces keep the other workers busy; a
background piece is delayed by at most max_background_wait_s while urgent
work keeps coming, and runs at once when it stops; cancelling takes a
synthesis's queued piece out (it never runs) and ends it exactly once.

The queue rules are checked as plain call sequences on a hand-set clock; the
threaded scheduler with scripted works whose pieces block until the test
lets them go; the engine with a scripted voice."""
from __future__ import annotations

import asyncio
import threading

from services.tts.engine import SynthesisRequest, TtsEngine
from services.tts.scheduler import PieceQueue, Priority, Scheduler, Ticket
from tests.unit.test_tts_engine import ScriptedVoice

U, B = Priority.URGENT, Priority.BACKGROUND


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class ScriptedWork:
    """``pieces`` pieces; each logs its name to the shared ``log`` and, when
    ``gate`` is set, waits for the test to release it."""

    def __init__(self, name: str, pieces: int, log: list[str], gate: threading.Semaphore | None = None) -> None:
        self.name, self.left, self.log, self.gate = name, pieces, log, gate
        self.started = threading.Event()
        self.ended = threading.Event()
        self.finished: list[BaseException | None] = []

    def step(self) -> bool:
        self.started.set()
        if self.gate is not None:
            assert self.gate.acquire(timeout=5), "test never released the piece"
        self.left -= 1
        self.log.append(self.name)
        return self.left > 0

    def finish(self, error: BaseException | None) -> None:
        self.finished.append(error)
        self.ended.set()


def ticket(name: str, p: Priority) -> Ticket:
    return Ticket(ScriptedWork(name, 1, []), p)


# -- the rule alone -----------------------------------------------------------------------

def test_urgent_goes_before_background_that_arrived_earlier():
    q = PieceQueue(max_background_wait_s=1.0)
    b1, b2, u1, u2 = ticket("b1", B), ticket("b2", B), ticket("u1", U), ticket("u2", U)
    for t in (b1, b2, u1, u2):
        q.push(t, now=0.0)
    assert [q.pop(0.5) for _ in range(5)] == [u1, u2, b1, b2, None]


def test_background_waits_at_most_the_limit_while_urgent_work_keeps_coming():
    q = PieceQueue(max_background_wait_s=1.0)
    b = ticket("b", B)
    q.push(b, now=0.0)
    for now in (0.2, 0.4, 0.6, 0.8):
        u = ticket("u", U)
        q.push(u, now)
        assert q.pop(now) is u
    q.push(ticket("u", U), 1.0)
    assert q.pop(1.0) is b            # waited its second: it goes first now
    assert q.pop(1.0).priority is U


def test_remove_and_depth():
    q = PieceQueue()
    b, u = ticket("b", B), ticket("u", U)
    q.push(b, 0.0)
    q.push(u, 0.0)
    assert (q.depth(U), q.depth(B)) == (1, 1)
    assert q.remove(b) and not q.remove(b)
    assert (q.depth(U), q.depth(B)) == (1, 0)
    assert q.pop(5.0) is u and q.pop(5.0) is None


# -- the threaded scheduler --------------------------------------------------------------

def busy_scheduler(clock: Clock, **kw) -> tuple[Scheduler, ScriptedWork, threading.Semaphore, list[str]]:
    """One worker, held inside a piece of 'hold' until the test releases it."""
    log: list[str] = []
    gate = threading.Semaphore(0)
    depths: list[tuple[Priority, int]] = []
    s = Scheduler(workers=1, clock=clock, on_depth=lambda p, n: depths.append((p, n)), **kw)
    hold = ScriptedWork("hold", 1, log, gate)
    s.submit(hold, B)
    assert hold.started.wait(5)
    return s, hold, gate, log


def test_urgent_work_queued_behind_background_work_runs_first():
    clock = Clock()
    waits: list[tuple[Priority, float]] = []
    s, hold, gate, log = busy_scheduler(clock, on_wait=lambda p, w: waits.append((p, w)))
    bg = ScriptedWork("bg", 2, log)
    urgent = ScriptedWork("urgent", 1, log)
    s.submit(bg, B)
    clock.t = 0.3
    s.submit(urgent, U)
    assert (s.depth(U), s.depth(B)) == (1, 1)
    clock.t = 0.5
    gate.release()
    assert bg.ended.wait(5) and urgent.ended.wait(5)
    assert log == ["hold", "urgent", "bg", "bg"]
    assert (U, 0.2) in [(p, round(w, 3)) for p, w in waits]
    assert bg.finished == urgent.finished == [None]
    s.close()


def test_a_long_background_synthesis_yields_to_urgent_work_between_pieces():
    clock = Clock()
    log: list[str] = []
    gate = threading.Semaphore(0)
    s = Scheduler(workers=1, clock=clock)
    story = ScriptedWork("story", 3, log, gate)
    s.submit(story, B)
    assert story.started.wait(5)        # inside its first clause
    urgent = ScriptedWork("urgent", 1, log)
    s.submit(urgent, U)
    for _ in range(3):
        gate.release()
    assert story.ended.wait(5)
    assert log == ["story", "urgent", "story", "story"]
    s.close()


def test_one_worker_is_kept_for_urgent_work():
    log: list[str] = []
    gate = threading.Semaphore(0)
    s = Scheduler(workers=2, clock=Clock())       # urgent_workers=1: background runs on one
    a, b = ScriptedWork("a", 1, log, gate), ScriptedWork("b", 1, log, gate)
    s.submit(a, B)
    s.submit(b, B)
    assert a.started.wait(5)
    assert not b.started.wait(0.1) and s.depth(B) == 1
    urgent = ScriptedWork("urgent", 1, log)
    s.submit(urgent, U)
    assert urgent.ended.wait(5)                   # while a is still inside its piece
    assert log == ["urgent"]
    gate.release()
    gate.release()
    assert b.ended.wait(5) and log == ["urgent", "a", "b"]
    s.close()


def test_background_is_not_starved_once_urgent_work_stops():
    clock = Clock()
    s, hold, gate, log = busy_scheduler(clock)
    bg = ScriptedWork("bg", 1, log)
    s.submit(bg, B)
    urgents = [ScriptedWork(f"u{i}", 1, log) for i in range(3)]
    for u in urgents:
        s.submit(u, U)
    gate.release()
    assert bg.ended.wait(5)
    assert log == ["hold", "u0", "u1", "u2", "bg"]
    s.close()


def test_cancel_removes_queued_pieces_and_ends_the_work_once():
    clock = Clock()
    s, hold, gate, log = busy_scheduler(clock)
    bg = ScriptedWork("bg", 3, log)
    t = s.submit(bg, B)
    assert s.depth(B) == 1
    s.cancel(t)
    assert s.depth(B) == 0 and bg.finished == [None]
    s.cancel(t)                         # twice: still one end
    gate.release()
    assert hold.ended.wait(5)
    assert "bg" not in log and bg.finished == [None]
    s.close()


def test_a_failing_piece_ends_its_work_with_the_error_and_the_worker_goes_on():
    class Boom(ScriptedWork):
        def step(self) -> bool:
            raise RuntimeError("voice crashed")

    log: list[str] = []
    s = Scheduler(workers=1, clock=Clock())
    boom, after = Boom("boom", 1, log), ScriptedWork("after", 1, log)
    s.submit(boom, U)
    s.submit(after, U)
    assert after.ended.wait(5)
    assert isinstance(boom.finished[0], RuntimeError) and log == ["after"]
    s.close()


def test_close_ends_queued_work_unrun():
    s, hold, gate, log = busy_scheduler(Clock())
    bg = ScriptedWork("bg", 1, log)
    s.submit(bg, B)
    s.close()
    assert bg.finished == [None]
    gate.release()
    assert hold.ended.wait(5) and "bg" not in log


# -- through the engine -------------------------------------------------------------------

LONG = " ".join(f"Sentence number {i} goes on for a while." for i in range(6))


async def test_an_urgent_synthesis_is_synthesised_before_running_background_ones_go_on():
    voice = ScriptedVoice(gate_from=0)   # clauses wait until the test releases the voice
    eng = TtsEngine({voice.info.id: voice}, scheduler=Scheduler(workers=1, max_background_wait_s=60))

    async def run(text: str, p: Priority) -> bool:
        pieces = [piece async for piece in eng.stream(eng.prepare(SynthesisRequest(text, priority=p)))]
        return pieces[-1].last

    stories = [asyncio.create_task(run(LONG, B)) for _ in range(2)]
    await asyncio.to_thread(voice.reached_gate.wait, 5)       # a story's first clause is running
    answer = asyncio.create_task(run("Hello there.", U))
    await asyncio.sleep(0.05)
    voice.release.set()
    assert all(await asyncio.wait_for(asyncio.gather(answer, *stories), 10))
    # The voice's own order: the running clause, then the answer, then the stories' other 11.
    texts = [text for text, _ in voice.calls]
    assert texts.index("Hello there.") == 1 and len(texts) == 13
    eng.close()


async def test_closing_a_stream_whose_clause_is_queued_ends_it_at_once_unrun():
    voice = ScriptedVoice(gate_from=0)
    sched = Scheduler(workers=1)
    eng = TtsEngine({voice.info.id: voice}, scheduler=sched)
    running = eng.stream(eng.prepare(SynthesisRequest("First one here.")))
    first = asyncio.ensure_future(running.__anext__())
    await asyncio.to_thread(voice.reached_gate.wait, 5)      # the worker is busy
    queued = eng.stream(eng.prepare(SynthesisRequest(LONG, priority=B)))
    pending = asyncio.ensure_future(queued.__anext__())
    await asyncio.sleep(0.02)
    assert sched.depth(B) == 1
    pending.cancel()                                           # what a gRPC cancel does
    await asyncio.wait_for(asyncio.gather(pending, return_exceptions=True), 1)  # no wait for the worker
    assert sched.depth(B) == 0
    voice.release.set()
    await first
    await running.aclose()
    assert [t for t, _ in voice.calls] == ["First one here."]
    eng.close()


async def test_one_queue_turn_per_clause_and_the_end_comes_with_the_last():
    # The gateway sends its next clause when this stream ends: the end must not
    # wait for another turn in the queue.
    turns: list[Priority] = []
    voice = ScriptedVoice()
    eng = TtsEngine({voice.info.id: voice}, scheduler=Scheduler(workers=1, on_wait=lambda p, w: turns.append(p)))
    pieces = [p async for p in eng.stream(eng.prepare(SynthesisRequest("One, two. Three!", priority=B)))]
    assert pieces[-1].last and len(voice.calls) == 2 and turns == [B, B]
    eng.close()
