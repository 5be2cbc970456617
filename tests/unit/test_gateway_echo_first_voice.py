"""A voice early in the first answer, before the echo detector has decided
(services/gateway/echo_first_voice.py).

Invariants: a listener with no echo who talks 0.7-0.75 s into a new
session's first answer is heard at the voice's onset (reported once, and
the raw mic replaces the canceller's output, which AEC3 would have ducked
40-70 dB), until the answer plays again after stopping; an echo at -30 dB
or louder coming back within 350 ms never fires the rule, whether the user
talks over it or not; a longer echo fires it at most once per session; the
rule is off unless asked for."""
from __future__ import annotations

import numpy as np
import pytest

from services.gateway import echo_first_voice as fv
from services.gateway.echo import FRAME, RATE, EchoCanceller
from services.gateway.echo_detect import EchoDetector
from tests.unit.test_gateway_echo import ArrayReference, room, run, speech


def _first_answer(voice_at_s: float | None, echo: tuple[float, float] | None = None, noise_rms: float = 0.0,
                  far_clips: tuple[int, int] = (0, 3), seed: int = 5) -> tuple[np.ndarray, np.ndarray, int | None]:
    """The answer playing from 0 s; the mic: its echo (delay ms, level dB) if
    any, a user's voice from ``voice_at_s`` if any, noise. Returns the far
    end, the mic and the voice's first sample (None without one)."""
    far = np.concatenate([speech(far_clips[0]), speech(far_clips[1])])
    mic = np.random.default_rng(seed).normal(0, noise_rms, len(far)) if noise_rms else np.zeros(len(far))
    if echo is not None:
        mic = mic + room(far, *echo, seed=seed)
    onset = None
    if voice_at_s is not None:
        voice = speech(4)
        start = int(voice_at_s * RATE)
        voice = voice[:len(far) - start]
        mic[start:start + len(voice)] += voice
        # The voice's onset: the first of fv.RUN frames in a row over fv.VOICE_MIN.
        loud = np.array([np.dot(voice[i:i + FRAME], voice[i:i + FRAME]) >= fv.VOICE_MIN
                         for i in range(0, len(voice) - FRAME, FRAME)])
        onset = start + next(k for k in range(len(loud)) if loud[k:k + fv.RUN].all()) * FRAME
    return far, mic, onset


def _fired(mic: np.ndarray, far: np.ndarray) -> list[int]:
    """The samples at which the detector reported a voice's onset."""
    d, at = EchoDetector(first_voice=True), []
    for i in range(0, len(far) - FRAME, FRAME):
        d.push(float(np.dot(mic[i:i + FRAME], mic[i:i + FRAME])), float(np.dot(far[i:i + FRAME], far[i:i + FRAME])))
        if d.voice_onset is not None:
            at.append(i - d.voice_onset * FRAME)
            d.voice_onset = None
    return at


@pytest.mark.parametrize("voice_at_s", [0.7, 0.75])
@pytest.mark.parametrize("noise_rms", [0.0, 30.0])
def test_a_listener_with_no_echo_is_heard_at_the_voices_onset(voice_at_s, noise_rms):
    """This answer's first 250 ms are soft (its clip's lead-in): from ~430 ms
    after its loud start every delay up to 350 ms is cleared. From 0.8 s on the
    quiet rule of echo_detect.py has said "none" already (the raw mic is used)."""
    far, mic, onset = _first_answer(voice_at_s, noise_rms=noise_rms)
    fired = _fired(mic, far)
    assert onset is not None and len(fired) == 1
    # Its first loud frames may not yet be 15 dB over the breath before them.
    assert 0 <= fired[0] - onset <= 0.05 * RATE


@pytest.mark.parametrize("voice_at_s", [0.3, 0.45])
def test_a_voice_before_350_ms_of_delays_are_cleared_is_left_to_the_canceller(voice_at_s):
    """Its onset could be the echo of the answer's start: nothing fires."""
    far, mic, _ = _first_answer(voice_at_s)
    assert _fired(mic, far) == []


@pytest.mark.parametrize("voice_at_s", [None, 0.2, 0.5, 0.8, 1.5])
@pytest.mark.parametrize("delay_ms,level_db", [(60, -6), (120, -20), (250, -6), (250, -30), (300, -10), (340, -6)])
@pytest.mark.parametrize("noise_rms", [0.0, 30.0])
def test_an_echo_within_350_ms_never_fires_it(voice_at_s, delay_ms, level_db, noise_rms):
    """Whether the user talks over the echo or not: the canceller stays on
    (a raw mic would carry the answer's echo to the VAD)."""
    far, mic, _ = _first_answer(voice_at_s, echo=(delay_ms, level_db), noise_rms=noise_rms)
    assert _fired(mic, far) == []


@pytest.mark.parametrize("far_clips", [(1, 2), (2, 0)])
@pytest.mark.parametrize("delay_ms", [100, 190, 280])
def test_an_echo_at_minus_30_db_of_other_answers_never_fires_it(far_clips, delay_ms):
    far, mic, _ = _first_answer(0.5, echo=(delay_ms, -30), far_clips=far_clips)
    assert _fired(mic, far) == []


def test_a_longer_echo_fires_it_at_most_once_per_session():
    far, mic, _ = _first_answer(None, echo=(450, -10))
    assert len(_fired(np.concatenate([mic, mic]), np.concatenate([far, far]))) <= 1


def test_the_raw_mic_replaces_the_cancellers_output_until_the_answer_plays_again():
    """The answer stops at the voice (the gateway pauses it); while it is
    stopped the output is the mic itself, not AEC3's; when an answer plays
    again the canceller's output is used again."""
    far, mic, onset = _first_answer(0.7)
    assert onset is not None
    stop = onset + int(0.1 * RATE)                     # the pause, 100 ms after the onset
    again = stop + int(1.0 * RATE)                     # the next answer
    played = far.copy()
    played[stop:again] = 0.0
    ec = EchoCanceller(onsets=True)
    out = run(ec, mic, ArrayReference(played))
    assert ec.voice_at is not None and 0 <= ec.voice_at - onset / RATE <= 0.05
    heard = slice(onset + int(0.05 * RATE) + fv.RUN * FRAME + 480, again)   # from the chunk after the onset's run
    assert np.array_equal(out[heard], mic[heard])
    assert not ec.detector.raw_voice


def test_the_raw_mic_ends_when_the_answer_did_not_stop():
    """No pause came (interruptions off): the canceller's output is used again."""
    far, mic, onset = _first_answer(0.7)
    d = EchoDetector(first_voice=True)
    states = []
    for i in range(0, len(far) - FRAME, FRAME):
        d.push(float(np.dot(mic[i:i + FRAME], mic[i:i + FRAME])), float(np.dot(far[i:i + FRAME], far[i:i + FRAME])))
        states.append(d.raw_voice)
    assert onset is not None
    k = onset // FRAME
    assert any(states[k:k + 10]) and not any(states[k + fv.NO_STOP + fv.GAP + 5:])


def test_it_is_off_unless_asked_for():
    far, mic, _ = _first_answer(0.7)
    d = EchoDetector()
    for i in range(0, len(far) - FRAME, FRAME):
        d.push(float(np.dot(mic[i:i + FRAME], mic[i:i + FRAME])), float(np.dot(far[i:i + FRAME], far[i:i + FRAME])))
        assert d.voice_onset is None and not d.raw_voice


def test_cleared_lag_counts_only_quiet_frames_after_loud_played_ones():
    ref = np.zeros(60)
    ref[10:40] = 1e9                                   # loud played frames 10..39
    mic = np.zeros(60)                                 # all quiet: each delay that saw 3 loud frames
    assert fv.cleared_lag(mic, ref) == 60 - 10 - fv.COVER
    mic[20:] = 1e7                                     # an echo from frame 20 on: only short delays are
    assert fv.cleared_lag(mic, ref) == 20 - 10 - fv.COVER
