"""A voice over a loud echo, seen by its energy in the canceller's output
(services/gateway/echo_onset.py), and the early pause it makes
(bargein.py ``echo_onset``, GATEWAY_ECHO_ONSET_PAUSE, on by default).

Invariants: the rule fires once per run of two 20 ms frames 25 dB over the
last second's median (and above -50 dBFS), at the run's start, never before
1.5 s of reference played without a break (an unconverged canceller lets the
first echo through; after a pause the floor is the pause's silence), never
on a one-frame spike or a slow rise; the early pause clears
the client's audio at once; a speech start takes it over (the reply is then
cancelled as for any barge-in, never resumed by the onset's timer); with no
speech the reply resumes after ECHO_ONSET_RESUME_S and plays to its end."""
from __future__ import annotations

import math

from prometheus_client import REGISTRY

from common.clock import VirtualClock
from services.gateway.bargein import ECHO_ONSET_RESUME_S
from services.gateway.echo_onset import ARM_FRAMES, EchoOnset
from services.gateway.fakes import FakeBackends
from services.gateway.scripted import STEP_S, ScriptedSession
from services.gateway.settings import GatewaySettings

N = 160   # samples in a 10 ms frame


def energy(dbfs: float) -> float:
    return N * 32768.0 ** 2 * 10 ** (dbfs / 10)


def feed(det: EchoOnset, levels: list[float], t0: float = 0.0, played: bool = True) -> list[float]:
    """10 ms frames at these levels; the run starts the rule returned."""
    out = []
    for i, lv in enumerate(levels):
        at = det.push(t0 + i * 0.01, energy(lv), N, played)
        if at is not None:
            out.append(round(at, 3))
    return out


def test_a_voice_jumping_out_of_the_residual_echo_is_seen_at_its_start():
    det = EchoOnset()
    assert feed(det, [-60.0] * 150) == []
    # 30 dB up for 60 ms: one onset, at the run's first 20 ms frame.
    assert feed(det, [-30.0] * 6 + [-60.0] * 20, t0=1.5) == [1.5]


def test_not_before_a_second_of_played_reference():
    det = EchoOnset()
    assert feed(det, [-60.0] * 50, played=False) == []       # nothing played yet: not armed
    assert feed(det, [-30.0] * 4, t0=0.5) == []
    det = EchoOnset()
    assert feed(det, [-60.0] * (ARM_FRAMES - 10)) == []
    assert feed(det, [-30.0] * 4, t0=1.4) == []               # 1.4 s played: AEC3 still converging
    assert feed(det, [-60.0] * 100 + [-30.0] * 4, t0=1.44) == [2.44]


def test_after_a_break_in_the_playing_not_before_another_second():
    det = EchoOnset()
    feed(det, [-60.0] * 150)
    feed(det, [-75.0] * 80, t0=1.5, played=False)             # paused: the floor falls to the silence
    assert feed(det, [-60.0] * 4 + [-30.0] * 4, t0=2.3) == []  # the resumed echo, over that floor
    assert feed(det, [-60.0] * 150 + [-30.0] * 4, t0=2.38) == [3.88]


def test_no_onset_from_a_spike_a_slow_rise_or_a_quiet_jump():
    det = EchoOnset()
    feed(det, [-60.0] * 150)
    assert feed(det, [-30.0] * 2 + [-60.0] * 20, t0=1.5) == []     # one 20 ms frame
    rise = [-60.0 + 0.15 * i for i in range(200)]                   # 30 dB over 2 s
    assert feed(det, rise, t0=2.0) == []
    det = EchoOnset()
    feed(det, [-90.0] * 150)
    assert feed(det, [-55.0] * 6, t0=1.5) == []                     # 35 dB up, but below -50 dBFS
    assert math.isclose(feed(det, [-45.0] * 6, t0=1.6)[0], 1.6)


QUESTION = "tell me a long story"
REPLY = ("Once upon a time there was a lighthouse keeper who counted ships every night. "
         "One winter a ship came that was not on any chart, and its lights were blue. "
         "The keeper wrote it down, and the next morning the ship was gone.")
SETTINGS = dict(redis_url="", silence_duration_ms=500, vad_min_silence_ms=160, vad_min_speech_ms=120,
                prefix_padding_ms=300, min_interrupt_ms=300, false_interruption_timeout_ms=800,
                echo_onset_pause=True)


LABELS = {"service": "unknown", "model": "unknown", "variant": "stable"}


def false_interruptions() -> float:
    return REGISTRY.get_sample_value("voice_gateway_false_interruptions_total", LABELS) or 0.0


def reactions() -> float:
    return REGISTRY.get_sample_value("voice_gateway_barge_in_reaction_seconds_count", LABELS) or 0.0


def session(speech: list, texts: list) -> ScriptedSession:
    clock = VirtualClock()
    b = FakeBackends.create(clock, speech=speech, texts=texts, replies=(REPLY, "Okay."))
    b.tts.rtf = 0.5
    return ScriptedSession(b, clock, GatewaySettings(**SETTINGS))


async def test_an_onset_with_no_speech_after_it_pauses_the_reply_and_resumes_it():
    before, reacted = false_interruptions(), reactions()
    async with session([(0.5, 2.5)], [QUESTION]) as s:
        await s.run_audio(4.0)                                   # the reply plays from ~3 s
        assert s.of("output_audio_buffer.started") and not s.of("output_audio_buffer.cleared")
        at = s.clock.now()
        s.conv.turns.bargein.echo_onset(at - 0.05)
        await s.run_audio(ECHO_ONSET_RESUME_S - 2 * STEP_S)
        cleared = s.first("output_audio_buffer.cleared")
        assert cleared.at - at <= STEP_S + 1e-6                  # at once
        assert len(s.of("output_audio_buffer.started")) == 1     # still paused
        await s.run_audio(14.0)
        assert len(s.of("output_audio_buffer.started")) == 2     # resumed...
        assert s.first("response.done").event["response"]["status"] == "completed"   # ... to the end
        assert len(s.of("input_audio_buffer.committed")) == 1    # no turn made of it
        assert false_interruptions() == before + 1
        assert reactions() == reacted                            # no barge-in: no reaction sample


async def test_a_speech_start_takes_the_pause_over_and_the_reply_is_cut():
    reacted = reactions()
    async with session([(0.5, 2.5), (5.0, 6.0)], [QUESTION, "stop, tell me about the weather"]) as s:
        await s.run_audio(5.0)
        s.conv.turns.bargein.echo_onset(s.clock.now())           # the voice, seen before the VAD
        await s.run_audio(4.0)
        assert len(s.of("output_audio_buffer.cleared")) == 1
        assert s.first("output_audio_buffer.cleared").at <= 5.0 + STEP_S + 1e-6
        done = s.first("response.done")
        assert done.event["response"]["status"] == "cancelled"
        rid = done.event["response"]["id"]
        started = [e for e in s.of("output_audio_buffer.started") if e.event["response_id"] == rid]
        assert len(started) == 1                                 # never resumed by the onset's timer
        assert reactions() == reacted + 1                        # one barge-in, one reaction


async def test_on_by_default_and_nothing_without_interruptions():
    assert GatewaySettings().echo_onset_pause
    async with session([(0.5, 2.5)], [QUESTION]) as s:
        await s.send({"type": "session.update", "session": {"audio": {"input": {"turn_detection": {
            "type": "server_vad", "interrupt_response": False}}}}})
        await s.run_audio(4.0)
        s.conv.turns.bargein.echo_onset(s.clock.now())
        await s.run_audio(1.0)
        assert not s.of("output_audio_buffer.cleared")


async def test_a_turn_going_on_keeps_the_pause_past_the_onsets_timer():
    # A cough from 5.0 to 6.6 s (no words): its speech start cancels the
    # onset's timer (due at 6.0 s) and takes the pause over; the turn's own
    # false-interruption timer resumes the reply 0.8 s after the cough ends.
    async with session([(0.5, 2.5), (5.0, 6.6)], [QUESTION, ""]) as s:
        await s.run_audio(5.0)
        s.conv.turns.bargein.echo_onset(s.clock.now())
        await s.run_audio(4.0)
        rid = s.first("output_audio_buffer.started").event["response_id"]
        started = [e.at for e in s.of("output_audio_buffer.started") if e.event["response_id"] == rid]
        assert len(started) == 2 and started[1] >= 6.6 + 0.8 - STEP_S


def test_the_canceller_reports_a_voice_in_its_output_once_asked_to():
    import numpy as np

    from services.gateway.echo_ref import SessionEcho
    from tests.unit.test_gateway_echo import CopyApm, pcm

    class Playing:            # the answer plays throughout, loud
        def frame(self, t: float) -> bytes:
            return pcm(np.full(N, 3000.0))

    rng = np.random.default_rng(1)
    mic = rng.normal(0, 30, 3 * 16000)            # the output: a residual echo at ~-60 dBFS ...
    mic[32000:36000] += rng.normal(0, 3000, 4000)  # ... and a voice from 2.0 s
    for onsets in (True, False):      # GATEWAY_ECHO_ONSET_PAUSE on (the default) and off
        echo = SessionEcho(lambda: None, make_apm=CopyApm, onsets=onsets)
        echo.reference = Playing()
        echo.canceller.detector.state = "echo"       # an echo is known (echo_detect.py; tested there)
        seen = []
        data = pcm(mic)
        for off in range(0, len(data), 980):
            echo.clean(data[off:off + 980], 100.0 + (off + 980) / 32000)
            at = echo.take_voice_onset()
            if at is not None:
                seen.append(round(at - 100.0, 2))
        assert seen == ([2.0] if onsets else [])
    # With no echo known yet (a headset early in a session), nothing is reported.
    echo = SessionEcho(lambda: None, make_apm=CopyApm, onsets=True)
    echo.reference = Playing()
    echo.canceller.detector.state = "unknown"
    echo.canceller.detector.push = lambda *_a: True       # stays unknown; AEC3's output used
    data = pcm(mic)
    for off in range(0, len(data), 980):
        echo.clean(data[off:off + 980], 100.0 + (off + 980) / 32000)
        assert echo.take_voice_onset() is None


async def test_turning_turn_detection_off_during_the_pause_resumes_the_reply():
    before = false_interruptions()
    async with session([(0.5, 2.5)], [QUESTION]) as s:
        await s.run_audio(4.0)
        s.conv.turns.bargein.echo_onset(s.clock.now())
        await s.run_audio(0.2)
        await s.send({"type": "session.update", "session": {"audio": {"input": {"turn_detection": None}}}})
        await s.run_audio(ECHO_ONSET_RESUME_S + 2 * STEP_S)
        assert len(s.of("output_audio_buffer.started")) == 2     # not paused for ever
        assert false_interruptions() == before                   # the client's doing, not one


async def test_an_onset_leaves_a_reply_a_turn_paused_alone():
    # A cough from 5.0 to 5.5 s pauses the reply (its turn pending); an onset
    # after it must not take the turn's false-interruption timer away.
    async with session([(0.5, 2.5), (5.0, 5.5)], [QUESTION, ""]) as s:
        await s.run_audio(5.8)
        assert len(s.of("output_audio_buffer.cleared")) == 1
        s.conv.turns.bargein.echo_onset(s.clock.now())
        await s.run_audio(3.0)
        assert len(s.of("output_audio_buffer.cleared")) == 1
        rid = s.first("output_audio_buffer.started").event["response_id"]
        started = [e.at for e in s.of("output_audio_buffer.started") if e.event["response_id"] == rid]
        assert len(started) == 2 and started[1] <= 5.5 + 0.8 + 0.5   # the turn's resume, on time
