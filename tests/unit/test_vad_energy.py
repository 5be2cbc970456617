"""The energy gate calls a frame quiet only when it can tell: a noise floor
known from frames silero called non-speech (digital silence aside), an
utterance well above it, the frame near the floor. In noise (low SNR) and at
a stream's start nothing is quiet, so silero decides alone as before."""
from __future__ import annotations

import numpy as np
import pytest

from services.vad.energy import EnergyGate, EnergyParams, frame_db

THR, LOW = 0.5, 0.35


def feed(gate: EnergyGate, frames: list[tuple[float, float, bool]]) -> list[bool]:
    """(dB, prob, in_speech) per frame -> quiet per frame."""
    return [gate.quiet(db, p, THR, LOW, s) for db, p, s in frames]


def noise(db: float, n: int = 20) -> list[tuple[float, float, bool]]:
    return [(db, 0.02, False)] * n


def test_hangover_at_the_floor_is_quiet_and_speech_is_not():
    gate = EnergyGate()
    feed(gate, noise(-45))
    out = feed(gate, [(-20, 0.99, True), (-25, 0.99, True), (-37, 0.99, True), (-44, 0.98, True)])
    assert out == [False, False, True, True]
    assert gate.floor_db == pytest.approx(-45)


def test_nothing_is_quiet_before_the_floor_is_known():
    gate = EnergyGate(EnergyParams(min_floor_frames=15))
    feed(gate, noise(-45, n=14))
    assert feed(gate, [(-20, 0.99, True), (-45, 0.99, True)]) == [False, False]
    feed(gate, noise(-45, n=1))
    assert feed(gate, [(-20, 0.99, True), (-45, 0.99, True)]) == [False, True]


def test_the_floor_is_known_from_the_noise_before_a_first_word():
    # 8 frames (256 ms) of room noise before the first word: the first
    # utterance of a stream already ends where its sound ends.
    gate = EnergyGate()
    feed(gate, noise(-45, n=7))
    assert feed(gate, [(-20, 0.99, True), (-45, 0.99, True)]) == [False, False]   # 224 ms: not yet
    feed(gate, noise(-45, n=1))
    assert feed(gate, [(-20, 0.99, True), (-45, 0.99, True)]) == [False, True]


def test_low_snr_leaves_it_to_silero():
    gate = EnergyGate()
    feed(gate, noise(-35))               # a noisy room: speech only 15 dB above it
    assert feed(gate, [(-20, 0.99, True), (-34, 0.99, True)]) == [False, False]


def test_digital_silence_is_never_the_floor_and_is_quiet_in_speech():
    gate = EnergyGate()
    feed(gate, noise(-120, n=100))       # a client's zero padding
    assert gate.floor_db is None
    assert feed(gate, [(-20, 0.99, True), (-120, 0.99, True), (-45, 0.99, True)]) == [False, True, False]
    assert feed(gate, [(-120, 0.1, False)]) == [False]


def test_each_utterance_is_judged_by_its_own_level():
    gate = EnergyGate()
    feed(gate, noise(-45))
    feed(gate, [(-15, 0.99, True)] * 3)
    feed(gate, noise(-45, n=3))          # between utterances the level resets
    assert feed(gate, [(-30, 0.99, True), (-38, 0.99, True)]) == [False, False]   # 15 dB over: too quiet to tell


def test_frame_db():
    assert frame_db(np.full(512, 0.1, np.float32)) == pytest.approx(-20, abs=0.01)
    assert frame_db(np.zeros(512, np.float32)) == pytest.approx(-120)


def test_bad_params_say_what_is_wrong():
    with pytest.raises(ValueError, match="above_floor_db"):
        EnergyParams(above_floor_db=25, min_snr_db=20)
