"""Invariants of the process-wide interim scheduler (sans-IO, virtual clock):
when a slot frees, the stream with the oldest unseen audio goes first, across
streams; a stream holds at most one queued request (asking again replaces
it); no more than ``max_running`` passes run at once; no interim starts while
a final is waiting or running; and under load the cadence stretches evenly
across the streams and returns to the asked interval for a stream alone. A
pass may carry a batch of streams: the oldest ones, one slot for all."""
from __future__ import annotations

import statistics

import pytest

from common.clock import VirtualClock
from services.asr.interims import InterimScheduler


class Recorder:
    """Start callbacks and observer in one: records who was granted, in order."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.queue: list[tuple[int, int]] = []
        self.waits: list[float] = []

    def start(self, stream: str, accept: bool = True):
        def go() -> bool:
            if accept:
                self.started.append(stream)
            return accept
        return go

    def interim_queue(self, queued: int, running: int) -> None:
        self.queue.append((queued, running))

    def interim_waited(self, seconds: float) -> None:
        self.waits.append(seconds)


def scheduler(max_running: int = 1):
    rec, clock = Recorder(), VirtualClock()
    return InterimScheduler(max_running, clock, rec), rec, clock


def test_a_free_slot_goes_at_once_and_the_oldest_unseen_audio_goes_next() -> None:
    s, rec, _ = scheduler()
    s.want("a", 0.0, rec.start("a"))
    assert rec.started == ["a"] and s.running == 1        # idle: no wait at all
    s.want("b", 2.0, rec.start("b"))
    s.want("c", 1.0, rec.start("c"))                      # asked later, but has waited longer
    s.want("d", 3.0, rec.start("d"))
    assert rec.started == ["a"] and s.queued == 3
    s.finished("a")
    s.want("a", 4.0, rec.start("a"))                      # its next request queues behind the others
    s.finished("c")
    s.finished("b")
    s.finished("d")
    assert rec.started == ["a", "c", "b", "d", "a"]
    assert rec.queue[-1] == (0, 1)


def test_ties_go_to_the_earlier_request() -> None:
    s, rec, _ = scheduler()
    s.final_started()
    for name in "xyz":
        s.want(name, 1.0, rec.start(name))
    s.final_finished()
    s.finished("x")
    s.finished("y")
    assert rec.started == ["x", "y", "z"]


def test_asking_again_replaces_the_queued_request() -> None:
    s, rec, _ = scheduler()
    s.want("busy", 0.0, rec.start("busy"))
    s.want("a", 1.0, rec.start("a-first"))
    s.want("a", 1.5, rec.start("a-second"))
    assert s.queued == 1
    s.want("b", 1.2, rec.start("b"))
    s.finished("busy")
    # One pass for a, through its latest callback, keeping its oldest unseen audio's place.
    assert rec.started == ["busy", "a-second"]
    s.finished("a")
    assert rec.started == ["busy", "a-second", "b"]


def test_at_most_max_running_passes_at_once() -> None:
    s, rec, _ = scheduler(max_running=2)
    for i, name in enumerate("abcd"):
        s.want(name, float(i), rec.start(name))
    assert rec.started == ["a", "b"] and s.running == 2 and s.queued == 2
    s.finished("b")
    assert rec.started == ["a", "b", "c"] and s.running == 2


def test_no_interim_starts_while_a_final_waits_or_runs() -> None:
    s, rec, clock = scheduler(max_running=2)
    s.want("a", 0.0, rec.start("a"))                      # already running when the final comes
    s.final_started()
    s.want("b", 0.0, rec.start("b"))
    s.finished("a")
    s.want("a", 0.1, rec.start("a"))
    assert rec.started == ["a"] and s.running == 0 and s.queued == 2
    s.final_started()                                      # a second stream's final
    s.final_finished()
    assert rec.started == ["a"]                            # one final is still running
    clock._now = 0.8
    s.final_finished()
    assert rec.started == ["a", "b", "a"]
    assert rec.waits[-2:] == [pytest.approx(0.8), pytest.approx(0.8)]


def test_a_declined_grant_takes_no_slot_and_withdrawn_requests_are_gone() -> None:
    s, rec, _ = scheduler()
    s.final_started()
    s.want("gone", 0.0, rec.start("gone", accept=False))   # e.g. its stream closed meanwhile
    s.want("ended", 0.5, rec.start("ended"))
    s.want("next", 1.0, rec.start("next"))
    s.withdraw("ended")                                    # its utterance ended: the final covers it
    assert s.queued == 2
    s.final_finished()
    assert rec.started == ["next"] and s.running == 1 and s.queued == 0


def test_finishing_a_final_never_started_is_a_bug() -> None:
    s, _, _ = scheduler()
    with pytest.raises(AssertionError):
        s.final_finished()


# -- cadence under load: a small simulation of streams on the scheduler ---------------------

STEP = 0.02   # 20 ms chunks, as a browser microphone sends them


def simulate(talking: dict[str, tuple[float, float]], seconds: float, pass_s: float,
             interval_s: float = 0.4, max_running: int = 1,
             max_batch: int = 1) -> dict[str, list[float]]:
    """Each stream speaks in real time from start to end (seconds) and asks for an
    interim every ``interval_s`` of unseen audio, one pass at a time, like
    session.py; a pass takes ``pass_s``. Returns each stream's seconds of new
    speech between consecutive interims (what a user sees stretch)."""
    clock = VirtualClock()
    s = InterimScheduler(max_running, clock, max_batch=max_batch)
    heard = {name: 0.0 for name in talking}        # audio received
    seen = {name: 0.0 for name in talking}         # audio covered by the last pass started
    unseen_since = {name: 0.0 for name in talking}
    running: dict[str, tuple[float, float]] = {}   # name -> (ends at, audio covered)
    sent = {name: 0.0 for name in talking}
    gaps: dict[str, list[float]] = {name: [] for name in talking}

    def start(name: str):
        def go() -> bool:
            seen[name] = heard[name]
            running[name] = (clock.now() + pass_s, heard[name])
            return True
        return go

    for _ in range(round(seconds / STEP)):
        clock._now = round(clock.now() + STEP, 9)
        for name, (ends, covered) in list(running.items()):
            if ends <= clock.now() + 1e-9:
                del running[name]
                gaps[name].append(round(covered - sent[name], 3))
                sent[name] = covered
                s.finished(name)
        for name, (begin, end) in talking.items():
            if not begin <= clock.now() - STEP < end:
                continue
            if heard[name] == seen[name]:
                unseen_since[name] = clock.now() - STEP
            heard[name] = round(heard[name] + STEP, 9)
            if name not in running and heard[name] - seen[name] >= interval_s - 1e-9:
                s.want(name, unseen_since[name], start(name))
    return gaps


def test_a_lone_stream_gets_an_interim_every_interval() -> None:
    gaps = simulate({"a": (0.0, 6.0)}, 6.0, pass_s=0.15)
    assert set(gaps["a"]) == {0.4}


def test_cadence_stretches_evenly_when_streams_compete_and_recovers_alone() -> None:
    # Four people talk for 6 s; one goes on alone for 6 s more. One slot, 150 ms passes:
    # 4 streams would want 10 passes/s, the slot does ~6.7.
    talking = {"a": (0.0, 12.0), "b": (0.05, 6.0), "c": (0.1, 6.0), "d": (0.15, 6.0)}
    gaps = simulate(talking, 12.0, pass_s=0.15)
    crowded = {n: [g for g in gaps[n][1:]] for n in "bcd"}
    for name, gs in crowded.items():
        assert 0.5 <= statistics.median(gs) <= 0.7, (name, gs)   # ~4 passes x 150 ms of speech
        assert max(gs) <= 0.8, (name, gs)                           # nobody is starved
    a_crowded = gaps["a"][1:len(crowded["b"]) + 1]
    assert 0.5 <= statistics.median(a_crowded) <= 0.7
    assert gaps["a"][-5:] == [0.4] * 5                              # alone again: back to 400 ms


def test_a_second_slot_halves_the_stretch() -> None:
    talking = {n: (0.0, 6.0) for n in "abcd"}
    one = simulate(talking, 6.0, pass_s=0.15)
    two = simulate(talking, 6.0, pass_s=0.15, max_running=2)
    assert statistics.median(g for n in "abcd" for g in one[n][1:]) >= 0.56
    assert statistics.median(g for n in "abcd" for g in two[n][1:]) == 0.4


# -- batched passes: several streams in one pass ---------------------------------------------

def test_a_free_slot_takes_the_oldest_streams_up_to_the_batch_in_one_pass() -> None:
    rec, clock = Recorder(), VirtualClock()
    s = InterimScheduler(1, clock, rec, max_batch=3)
    s.final_started()
    for i, name in enumerate("edcba"):                     # a's unseen audio is the oldest
        s.want(name, 4.0 - i, rec.start(name))
    s.final_finished()
    assert rec.started == ["a", "b", "c"] and s.running == 3 and s.passes == 1
    assert s.pass_of("a") == s.pass_of("b") == s.pass_of("c") is not None
    assert s.pass_of("d") is None and s.queued == 2
    s.finished("a")
    s.finished("b")
    assert rec.started == ["a", "b", "c"]                  # the slot frees with the pass's last stream
    s.finished("c")
    assert rec.started == ["a", "b", "c", "d", "e"] and s.passes == 1
    assert s.pass_of("d") == s.pass_of("e") and s.pass_of("d") is not None


def test_max_running_counts_passes_not_streams_and_a_declined_grant_leaves_the_batch() -> None:
    rec, clock = Recorder(), VirtualClock()
    s = InterimScheduler(2, clock, rec, max_batch=2)
    s.final_started()
    s.want("gone", 0.0, rec.start("gone", accept=False))
    for i, name in enumerate("abcde"):
        s.want(name, 1.0 + i, rec.start(name))
    s.final_finished()
    # Two passes of two; the stream that declined takes no place in its batch.
    assert rec.started == ["a", "b", "c", "d"] and s.passes == 2 and s.queued == 1
    assert s.pass_of("a") == s.pass_of("b") != s.pass_of("c") == s.pass_of("d")
    assert s.pass_of("gone") is None


def test_batches_keep_the_cadence_of_four_streams_close_to_the_asked_interval() -> None:
    # As test_cadence_stretches_evenly..., but one pass carries all four streams. A batched
    # pass costs more than one stream's (here 200 ms against 150): still far less stretch.
    talking = {n: (0.0, 6.0) for n in "abcd"}
    gaps = simulate(talking, 6.0, pass_s=0.2, max_batch=4)
    assert statistics.median(g for n in "abcd" for g in gaps[n][1:]) <= 0.44


def test_a_start_that_raises_keeps_no_slot() -> None:
    rec, clock = Recorder(), VirtualClock()
    s = InterimScheduler(1, clock, rec, max_batch=2)

    def broken() -> bool:
        raise RuntimeError("loop closing")

    with pytest.raises(RuntimeError):
        s.want("a", 0.0, broken)
    assert s.running == 0 and s.passes == 0
    s.want("b", 1.0, rec.start("b"))
    assert rec.started == ["b"] and rec.queue[-1] == (0, 1)    # the gauge counts passes
