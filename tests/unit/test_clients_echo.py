"""The echo client (clients/echo.py) that benchmarks and e2e tests use to
play a user on loudspeakers.

Invariants: what the speaker played comes back into the microphone exactly
``delay_ms`` later at ``level_db`` below it (with the room's tail); audio
queues back to back from its arrival like a real player; a clear drops what
was queued and not yet played; the mic's own speech is mixed in unchanged;
a long session does not grow its buffer."""
from __future__ import annotations

import base64

import numpy as np
import pytest

from clients.echo import EchoSpeaker, Room, room_from_env

RATE = 24000


def delta(x: np.ndarray) -> dict:
    return {"type": "response.output_audio.delta", "delta": base64.b64encode(x.astype("<i2").tobytes()).decode()}


def speaker(room: Room) -> EchoSpeaker:
    return EchoSpeaker(RATE, RATE, room, lambda t: int(round(t * RATE)))


def test_played_audio_comes_back_delayed_and_attenuated():
    sp = speaker(Room(delay_ms=100, level_db=-10, noise_dbfs=-200))
    # Broadband, like speech: a room's response is not flat at any one frequency.
    tone = np.random.default_rng(0).normal(0, 5000, RATE)
    sp.on_event(delta(tone[:RATE // 2]), 0.5)         # arrives at 0.5 s: plays 0.5-1.0 s
    sp.on_event(delta(tone[RATE // 2:]), 0.6)         # queued behind it: plays 1.0-1.5 s
    echo = sp.echo(0, 2 * RATE)
    assert not np.any(echo[:int(0.6 * RATE)])          # nothing before 0.5 s + 100 ms
    assert np.any(echo[int(0.6 * RATE):int(0.61 * RATE)])
    body = echo[int(0.8 * RATE):int(1.5 * RATE)]
    level = 10 * np.log10(np.mean(body ** 2) / np.mean(tone ** 2))
    assert level == pytest.approx(-10, abs=1.5)
    assert not np.any(echo[int(1.75 * RATE):])        # 1.5 s + delay + a 120 ms tail
    assert sp.played_s == pytest.approx(1.0)


def test_a_clear_drops_what_was_queued_and_the_users_voice_is_mixed_in():
    sp = speaker(Room(delay_ms=60, level_db=-6, noise_dbfs=-200))
    sp.on_event(delta(np.full(RATE, 5000.0)), 0.0)    # 1 s queued at 0 s
    sp.on_event({"type": "output_audio_buffer.cleared"}, 0.4)
    assert sp.played_s == pytest.approx(0.4)
    assert not np.any(sp.echo(int(0.6 * RATE), RATE // 2))
    voice = (np.arange(480) % 100 * 50).astype("<i2")
    mixed = np.frombuffer(sp.mix(int(2 * RATE), voice.tobytes()), dtype="<i2")
    assert np.array_equal(mixed, voice)                # no echo then: the voice unchanged


def test_a_long_session_keeps_a_small_buffer():
    sp = speaker(Room(noise_dbfs=-200))
    for k in range(300):                               # 5 minutes of answer in 1 s deltas
        sp.on_event(delta(np.full(RATE, 100.0)), float(k))
        sp.mix(k * RATE, bytes(RATE * 2))
    assert len(sp._played) < 5 * RATE


def test_the_load_tests_room_comes_from_its_environment_variable():
    assert room_from_env("") is None
    r = room_from_env("250,-6")
    assert (r.delay_ms, r.level_db) == (250.0, -6.0)
