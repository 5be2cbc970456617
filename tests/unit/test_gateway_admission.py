"""Invariant: the admission gate never lets more than ``limit`` sessions in at
once, gives every released slot back, refuses everything once draining, and
raises on a release it never admitted (a slot counted twice is a bug)."""
from __future__ import annotations

import pytest

from services.gateway.admission import DRAINING, LIMIT, Admission


def test_admits_up_to_the_limit_then_refuses():
    gate = Admission(2)
    assert gate.admit() is None
    assert gate.admit() is None
    assert gate.admit() == LIMIT
    assert gate.active == 2             # a refusal takes no slot
    assert gate.unavailable() == LIMIT


def test_a_released_slot_admits_the_next_session():
    gate = Admission(1)
    assert gate.admit() is None
    assert gate.admit() == LIMIT
    gate.release()
    assert gate.active == 0 and gate.unavailable() is None
    assert gate.admit() is None


def test_zero_means_unlimited():
    gate = Admission(0)
    assert all(gate.admit() is None for _ in range(1000))
    assert gate.active == 1000 and gate.unavailable() is None


def test_draining_refuses_new_sessions_and_lets_admitted_ones_finish():
    gate = Admission(3)
    assert gate.admit() is None
    gate.drain()
    assert gate.admit() == DRAINING
    assert gate.unavailable() == DRAINING
    gate.release()                      # the admitted session ends normally
    assert gate.active == 0
    assert gate.admit() == DRAINING     # and room alone does not reopen the gate


def test_release_without_admit_raises():
    gate = Admission(1)
    with pytest.raises(RuntimeError):
        gate.release()
    assert gate.admit() is None
    gate.release()
    with pytest.raises(RuntimeError):
        gate.release()


def test_negative_limit_is_rejected():
    with pytest.raises(ValueError):
        Admission(-1)
