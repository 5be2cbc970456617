"""Invariant: a release steps 5 -> 25 -> 50 -> 100 % only on passing verdicts,
one interval per step; a failing verdict sets the weight to 0 at once and
records the release as rolled back; an inconclusive step holds, is re-judged,
and aborts (weight 0) once held past its limit; an operator's abort is never
overwritten by the loop; every decision is an event with its rule and values.

Everything runs on a VirtualClock over the in-memory store: a 20-minute
release takes microseconds, and the times in the events are exact."""
from __future__ import annotations

import asyncio
import random

import pytest

from common.clock import VirtualClock
from release import machine
from release.controller import Controller
from release.judge import JudgeConfig
from release.samples import Sample
from release.state import Release
from release.store import MemoryReleaseStore

CFG = JudgeConfig(min_samples=20)


def add_turns(store: MemoryReleaseStore, t0: float, t1: float, *, canary_tts: float = 100.0,
              canary_failed: bool = False, per_variant: int = 40, seed: int = 0) -> None:
    """Turns spread over [t0, t1): ``per_variant`` on the TTS canary and as many on stable."""
    rnd = random.Random(seed)
    for i in range(per_variant):
        ts = t0 + (t1 - t0) * i / per_variant
        for canary in (False, True):
            failed = canary and canary_failed
            store.sample_log.append(Sample(
                ts=ts, canary=frozenset({"tts"}) if canary else frozenset(),
                v2v_ms=None if failed else 700 * rnd.lognormvariate(0, 0.1),
                tts_first_audio_ms=None if failed else (canary_tts if canary else 100) * rnd.lognormvariate(0, 0.1),
                failed=failed))


async def setup(steps=(5, 25, 50, 100), interval=60.0, hold_limit=300.0):
    clock, store = VirtualClock(start=10_000.0), MemoryReleaseStore()
    ctl = Controller(store, clock, CFG)
    await ctl.start("tts", list(steps), interval, hold_limit)
    return clock, store, ctl


async def release(store: MemoryReleaseStore) -> Release:
    return (await store.load_all())["tts"]


async def test_good_canary_steps_to_promotion_one_interval_per_step():
    clock, store, ctl = await setup()
    assert (await release(store)).weight == 5
    weights = []
    for step in range(3):
        t = clock.now()
        add_turns(store, t, t + 60, seed=step)
        await clock.advance(59.0, step=1.0)
        assert await ctl.tick() == []              # not due yet, nothing failing: no decision
        await clock.advance(1.0, step=1.0)
        [ev] = await ctl.tick()
        assert ev["event"] == "pass" and ev["rule"] == "all"
        weights.append((await release(store)).weight)
    assert weights == [25, 50, 100]
    rel = await release(store)
    assert rel.state == "promoted" and rel.decisions["pass"] == 3
    assert await ctl.tick() == []                  # promoted is not judged again
    events = await store.events("tts")
    assert [e["event"] for e in events] == ["start", "pass", "pass", "pass"]
    assert [e["ts"] for e in events] == [10_000.0, 10_060.0, 10_120.0, 10_180.0]
    assert events[1]["window"] == [10_000.0, 10_060.0] and events[1]["counts"]["canary"] == 40


async def test_failing_verdict_rolls_back_to_weight_zero_at_once():
    clock, store, ctl = await setup()
    add_turns(store, clock.now(), clock.now() + 60, canary_tts=250.0)
    await clock.advance(60.0, step=1.0)
    [ev] = await ctl.tick()
    rel = await release(store)
    assert (rel.state, rel.weight) == ("rolled_back", 0.0)
    assert ev["event"] == "fail" and ev["rule"] == "mann_whitney:tts_first_audio_ms"
    assert ev["from"] == {"state": "progressing", "weight": 5.0, "step": 0}
    check = next(c for c in ev["checks"] if c["rule"] == ev["rule"])
    assert check["outcome"] == "fail" and check["p"] < 0.01 and check["value"] > 1.0
    assert rel.decisions["fail"] == 1
    # The record keeps the latest verdict and its rule, for the canary dashboard.
    assert rel.last == {"verdict": "fail", "rule": "mann_whitney:tts_first_audio_ms", "at": clock.now()}
    assert await ctl.tick() == []                  # rolled back: nothing more to judge


async def test_hard_failure_rolls_back_before_the_step_is_due():
    clock, store, ctl = await setup(interval=600.0)
    add_turns(store, clock.now(), clock.now() + 10, canary_failed=True, per_variant=8)
    await clock.advance(10.0, step=1.0)
    [ev] = await ctl.tick()
    assert ev["event"] == "fail" and ev["rule"] == "hard:failure_ratio"
    assert (await release(store)).weight == 0.0


async def test_statistical_failure_waits_for_the_check_time():
    clock, store, ctl = await setup(interval=600.0)
    add_turns(store, clock.now(), clock.now() + 60, canary_tts=250.0)
    await clock.advance(60.0, step=1.0)
    assert await ctl.tick() == []                  # not a hard rule: judged at 600 s only
    await clock.advance(540.0, step=10.0)
    [ev] = await ctl.tick()
    assert ev["event"] == "fail"


async def test_inconclusive_holds_then_aborts_after_the_hold_limit():
    clock, store, ctl = await setup(interval=60.0, hold_limit=180.0)
    add_turns(store, clock.now(), clock.now() + 60, per_variant=5)     # far below min_samples
    await clock.advance(60.0, step=1.0)
    [ev] = await ctl.tick()
    rel = await release(store)
    assert ev["event"] == "inconclusive" and rel.state == "holding" and rel.weight == 5
    assert rel.hold_since == 10_060.0
    for t in (120.0, 180.0):
        await clock.advance(60.0, step=1.0)
        [ev] = await ctl.tick()
        assert ev["event"] == "inconclusive" and (await release(store)).state == "holding"
    await clock.advance(60.0, step=1.0)            # held 180 s: the limit
    [ev] = await ctl.tick()
    rel = await release(store)
    assert ev["event"] == "hold_expired" and (rel.state, rel.weight) == ("aborted", 0.0)
    assert "inconclusive for 180 s" in ev["reason"]
    assert rel.decisions["inconclusive"] == 4
    assert rel.last is not None and rel.last["verdict"] == "hold_expired"    # not "inconclusive"


async def test_a_hold_that_gets_enough_turns_moves_on():
    clock, store, ctl = await setup()
    add_turns(store, clock.now(), clock.now() + 60, per_variant=5)
    await clock.advance(60.0, step=1.0)
    assert (await ctl.tick())[0]["event"] == "inconclusive"
    add_turns(store, clock.now(), clock.now() + 60, seed=9)            # the window keeps growing
    await clock.advance(60.0, step=1.0)
    [ev] = await ctl.tick()
    rel = await release(store)
    assert ev["event"] == "pass" and (rel.state, rel.weight, rel.hold_since) == ("progressing", 25, None)


async def test_operator_abort_and_promote():
    clock, store, ctl = await setup()
    rel = await ctl.promote("tts")
    assert (rel.state, rel.weight) == ("promoted", 100)
    rel = await ctl.abort("tts", "bad reports from users")
    assert (rel.state, rel.weight) == ("aborted", 0)
    events = await store.events()
    assert [(e["event"], e["actor"]) for e in events] == [("start", "operator"), ("promote", "operator"),
                                                          ("abort", "operator")]
    assert events[-1]["reason"] == "bad reports from users"
    with pytest.raises(machine.IllegalTransition):
        await ctl.promote("tts")
    await ctl.start("tts", [10, 100], 30, 60)      # a new release after an abort
    assert (await release(store)).weight == 10


async def test_start_while_progressing_is_refused():
    _, _, ctl = await setup()
    with pytest.raises(machine.IllegalTransition):
        await ctl.start("tts")
    with pytest.raises(ValueError):
        await ctl.start("nope")


async def test_a_stale_judgement_never_overwrites_an_abort():
    clock, store, ctl = await setup()
    add_turns(store, clock.now(), clock.now() + 60)
    await clock.advance(60.0, step=1.0)
    stale = await release(store)                   # the loop read this ...
    await ctl.abort("tts")                         # ... the operator aborted meanwhile ...
    store.load_all = lambda: _fixed({"tts": stale})  # ... and the loop judges what it read
    assert await ctl.tick() == []
    del store.load_all
    rel = await release(store)
    assert (rel.state, rel.weight) == ("aborted", 0.0)


async def _fixed(value):
    return value


async def test_the_loop_runs_on_the_injected_clock():
    clock, store, ctl = await setup(steps=(5, 100), interval=60.0)
    add_turns(store, clock.now(), clock.now() + 60)
    stop = asyncio.Event()
    loop = asyncio.create_task(ctl.run(poll_s=10.0, stop=stop))
    await clock.advance(70.0, step=1.0)
    stop.set()
    await clock.advance(10.0, step=1.0)
    await asyncio.wait_for(loop, 1.0)
    rel = await release(store)
    assert (rel.state, rel.weight) == ("promoted", 100)


async def test_the_heartbeat_beats_around_every_tick_even_a_failing_one(tmp_path):
    clock, store, ctl = await setup(steps=(5, 100), interval=60.0)
    beats: list[float] = []

    async def broken() -> list:
        raise ConnectionError("redis down")
    ctl.tick = broken                                # every tick fails: the loop itself lives on
    stop = asyncio.Event()
    loop = asyncio.create_task(ctl.run(poll_s=10.0, stop=stop, heartbeat=lambda: beats.append(clock.now())))
    await clock.advance(35.0, step=1.0)
    stop.set()
    await clock.advance(10.0, step=1.0)
    await asyncio.wait_for(loop, 1.0)
    assert len(beats) == 8 and max(b - a for a, b in zip(beats, beats[1:])) <= 10.0


def test_the_liveness_check_reads_the_heartbeat_age(tmp_path, capsys):
    import os
    import time

    from release import alive
    beat = tmp_path / "beat"
    assert alive.main([str(beat), "60"]) == 1 and "no heartbeat file" in capsys.readouterr().err
    beat.touch()
    assert alive.main([str(beat), "60"]) == 0
    os.utime(beat, (time.time() - 120, time.time() - 120))
    assert alive.main([str(beat), "60"]) == 1 and "120 s ago" in capsys.readouterr().err
    assert alive.main([]) == 2


def test_steps_are_validated():
    for bad in ([50], [0, 100], [50, 25], [5, 150]):
        with pytest.raises(ValueError):
            machine.validate_steps(bad)
    assert machine.validate_steps([5, 100]) == [5.0, 100.0]


def test_transition_table_covers_every_state():
    # A newcomer reads the table: every state has a way out to weight 0 or a new start.
    from release.state import STATES
    for state in STATES:
        assert any(s == state and e in (machine.ABORT, machine.START, machine.FAIL)
                   for s, e in machine.TABLE), state


def test_the_release_command_imports_without_the_evaluation_extras():
    """`python -m release` runs in the gateway image: its top-level imports
    must not need what only the probes' scoring uses (jiwer; the image has it
    since requirements.txt lists it, but a command like `start` never should)."""
    import subprocess
    import sys

    from tests.procs import ROOT
    code = "import sys; sys.modules['jiwer'] = None; import release.__main__, release.alive"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env={"PYTHONPATH": f"{ROOT}:{ROOT / 'gen'}", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert "jiwer" in (ROOT / "requirements.txt").read_text(), "the probes score WER with jiwer in the image"
