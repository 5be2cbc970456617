"""The SLO gate fails a run exactly when a figure breaks its threshold (and
when nothing ran), with thresholds from observability/slo.py; the step shape
adds users on schedule, holds the last step, then stops the run."""
from __future__ import annotations

import argparse

import pytest

from loadtests.shapes import StepSchedule
from loadtests.slo_gate import Sample, Thresholds, add_flags, judge, percentile, thresholds
from observability import slo


def run(v2v: list[float], barge: list[float] = (), failed: list[str] = ()) -> list[Sample]:
    s = [Sample("voice_to_voice", ms, True) for ms in v2v]
    s += [Sample("barge_in_reaction", ms, True) for ms in barge]
    s += [Sample("turn", 3000, True) for _ in v2v]
    s += [Sample("turn", 30000, False, code) for code in failed]
    return s


def test_defaults_come_from_the_slo_file():
    a = argparse.ArgumentParser()
    add_flags(a)
    th = thresholds(a.parse_args([]))
    assert th == Thresholds(slo.VOICE_TO_VOICE_TARGET_S * 1000, 0.0, slo.BARGE_IN_P95_CAPACITY_S * 1000)
    assert (th.v2v_p95_ms, th.failed_turn_ratio, th.barge_in_p95_ms) == (1200, 0.0, 300)


def test_percentile_is_nearest_rank():
    assert percentile(range(1, 101), 95) == 95
    assert percentile([5], 95) == 5


def test_passes_within_every_threshold():
    v = judge(run([600] * 19 + [1200], barge=[150, 290]))
    assert v.ok, v.lines


@pytest.mark.parametrize("samples, broken", [
    (run([600] * 18 + [1250, 1300]), "voice_to_voice p95"),   # p95 1250 > 1200, unrounded
    (run([600] * 20, failed=["timeout"]), "failed turns"),
    (run([600] * 20, barge=[100] * 18 + [310, 320]), "barge_in_reaction p95"),
])
def test_fails_on_the_broken_figure(samples, broken):
    v = judge(samples)
    assert not v.ok
    assert [ln for ln in v.lines if ln.startswith("FAIL")] == [ln for ln in v.lines if broken in ln]


def test_failed_turns_are_listed_by_code_and_a_ratio_threshold_allows_some():
    v = judge(run([600] * 19, failed=["server_busy"]))
    assert not v.ok and any("server_busy" in ln for ln in v.lines)
    assert judge(run([600] * 19, failed=["server_busy"]), Thresholds(failed_turn_ratio=0.1)).ok


def test_nothing_ran_fails():
    assert not judge([]).ok
    assert not judge([Sample("turn", 1, False, "timeout")]).ok   # no answer at all


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_step_shape_adds_users_every_step_then_stops():
    clock = Clock()
    shape = StepSchedule(step_users=2, step_s=30, max_users=5, spawn_rate=0.5, clock=clock)
    seen = []
    for t in (0, 29.9, 30, 59, 60, 89.9, 90):
        clock.t = 1000.0 + t
        seen.append(shape.tick())
    assert seen == [(2, 0.5), (2, 0.5), (4, 0.5), (4, 0.5), (5, 0.5), (5, 0.5), None]


def test_step_shape_reads_the_environment(monkeypatch):
    monkeypatch.setenv("LOAD_STEP_USERS", "3")
    monkeypatch.setenv("LOAD_STEP_SECONDS", "10")
    monkeypatch.setenv("LOAD_MAX_USERS", "6")
    clock = Clock()
    shape = StepSchedule(clock=clock)
    assert shape.tick()[0] == 3 and shape.steps == 2
    clock.t += 20
    assert shape.tick() is None
