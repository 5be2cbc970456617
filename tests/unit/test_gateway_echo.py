"""The gateway's echo canceller (services/gateway/echo.py, echo_ref.py).

Invariants: the assistant's own voice, coming back into the microphone with
a delay, attenuation and a room's reverberation, is removed (well over 10 dB)
before VAD and ASR, while the user's voice over it is kept; when nothing
plays the audio passes through untouched and no canceller is even made; no
sample is lost or added (the ring buffer's positions stay exact); the
reference is what the listener's speaker played at the mic sample's capture
time (playout spans: start, pause, resume, underrun); the capture clock
follows the fastest arrivals and re-anchors after a gap in the stream; an
echo is seen within two seconds of playing, and where there is none (a
headset) the user's voice is left as it was (AEC3 would duck it)."""
from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import REGISTRY

from common.audio import read_wav
from common.clock import VirtualClock
from services.gateway.echo import FRAME, FRAME_BYTES, RATE, EchoCanceller
from services.gateway.echo_detect import EchoDetector
from services.gateway.echo_ref import CaptureClock
from services.gateway.fakes import FakeBackends
from services.gateway.playout import Playout
from services.gateway.scripted import ScriptedSession
from services.gateway.settings import GatewaySettings
from tests.procs import clips


def speech(i: int) -> np.ndarray:
    pcm, rate = read_wav(clips()[i][0])
    assert rate == RATE
    return np.frombuffer(pcm, dtype="<i2").astype(np.float64)


def room(x: np.ndarray, delay_ms: float, db: float, seed: int = 0) -> np.ndarray:
    """x heard back through a small room: delayed, attenuated, with a 150 ms decaying tail."""
    rng = np.random.default_rng(seed)
    ir = np.zeros(int(0.15 * RATE))
    ir[0] = 1.0
    ir[1:] = rng.normal(0, 1, len(ir) - 1) * np.exp(-np.arange(1, len(ir)) / (0.03 * RATE)) * 0.3
    y = np.convolve(x, ir)[:len(x)]
    y *= np.sqrt(np.mean(x ** 2) / np.mean(y ** 2)) * 10 ** (db / 20)
    d = int(delay_ms * RATE / 1000)
    return np.concatenate([np.zeros(d), y])[:len(x)]


def pcm(x: np.ndarray) -> bytes:
    return np.clip(x, -32768, 32767).astype("<i2").tobytes()


class ArrayReference:
    """What the speaker played: ``x`` from clock time 0, silence outside it."""

    def __init__(self, x: np.ndarray) -> None:
        self.x = x
        self.asked = 0

    def frame(self, t: float) -> bytes | None:
        self.asked += 1
        i = int(round(t * RATE))
        if i < 0 or i + FRAME > len(self.x):
            return None
        return pcm(self.x[i:i + FRAME])


def run(ec: EchoCanceller, mic: np.ndarray, ref, chunk: int = 480) -> np.ndarray:
    data, out = pcm(mic), bytearray()
    for off in range(0, len(data), chunk * 2):
        out += ec.process(data[off:off + chunk * 2], off / 2 / RATE, ref)
    return np.frombuffer(bytes(out), dtype="<i2").astype(np.float64)


def db(a: np.ndarray, b: np.ndarray) -> float:
    return 10 * np.log10(np.mean(a ** 2) / np.mean(b ** 2))


@pytest.mark.parametrize("delay_ms,level_db", [(60, -10), (250, -6)])
def test_echo_of_the_played_voice_is_removed(delay_ms, level_db):
    far = np.concatenate([speech(0), speech(3)])           # ~13 s of the assistant talking
    mic = room(far, delay_ms, level_db) + np.random.default_rng(1).normal(0, 30, len(far))
    ec = EchoCanceller()
    out = run(ec, mic, ArrayReference(far))
    assert len(out) + ec.held_s * RATE == len(mic)
    settled = slice(3 * RATE, len(far) - RATE)              # after AEC3 found the echo path
    assert db(mic[settled], out[settled]) > 15.0
    assert ec.erle_db() is not None and ec.erle_db() > 10.0
    assert ec.cpu_s < 0.2 * len(far) / RATE                # far below real time (measured: ~1%)


def test_the_users_voice_over_the_echo_is_kept():
    far, near = np.concatenate([speech(0), speech(3)]), speech(1)
    at = 8 * RATE
    user = np.zeros(len(far))
    user[at:at + len(near)] = near
    mic = room(far, 120, -10) + user
    out = run(EchoCanceller(), mic, ArrayReference(far))
    alone = run(EchoCanceller(), room(far, 120, -10), ArrayReference(far))
    talk = slice(at, at + len(near))
    # The user's words are much louder than what is left of the echo alone ...
    assert db(out[talk], alone[talk]) > 10.0
    # ... and most of the voice's energy is still there (AEC3 ducks a little in double talk).
    assert db(user[talk], out[talk]) < 6.0


def test_silence_on_the_speaker_passes_audio_through_untouched():
    made = []
    ec = EchoCanceller(make_apm=lambda: made.append(1))
    mic = pcm(np.random.default_rng(2).normal(0, 3000, RATE))
    ref = ArrayReference(np.zeros(0))
    assert ec.process(mic, 0.0, ref) == mic
    assert not ec.active and not made and ec.frames == 0


class CopyApm:
    """Stands in for AEC3: returns the mic frame, counts calls."""

    def __init__(self) -> None:
        self.reverse = self.forward = 0

    def process_reverse(self, pcm: bytes) -> None:
        assert len(pcm) == FRAME_BYTES
        self.reverse += 1

    def process(self, pcm: bytes) -> bytes:
        assert len(pcm) == FRAME_BYTES
        self.forward += 1
        return pcm


def test_no_sample_is_lost_or_added_across_odd_chunks_and_the_tail():
    apm = CopyApm()
    ec = EchoCanceller(make_apm=lambda: apm, tail_ms=300)
    played = np.ones(RATE)                                  # 1 s playing from t=0
    mic = np.arange(3 * RATE) % 1000
    data, out, t = pcm(mic), bytearray(), 0.0
    for n in (333, 17, 1000, 4000, 161, 159) * 20:
        piece, data = data[:n * 2], data[n * 2:]
        if piece:
            out += ec.process(piece, t, ArrayReference(played))
            t += len(piece) / 2 / RATE
    assert bytes(out) == pcm(mic)                           # in order, none lost, none added
    assert not ec.active and ec.held_s == 0                 # the tail ended: passing through again
    # Frames were processed from the first chunk to 300 ms past the end of playing.
    assert 1.3 * RATE / FRAME - 5 <= apm.forward <= 1.3 * RATE / FRAME + 40
    assert apm.reverse == apm.forward


def test_the_playout_says_what_the_speaker_played_when():
    clock = VirtualClock()
    p = Playout(clock, 16000)
    p.append(bytes(32 * 5000))                              # 5 s of audio
    assert p.position_at(0.0) is None                       # nothing started
    p.start(1.0)
    p.mark_sent(bytes(32 * 2000))                           # 2 s sent
    assert p.position_at(0.5) is None
    assert p.position_at(1.5) == pytest.approx(500.0)
    assert p.position_at(3.5) is None                       # ran dry after the 2 s sent
    clock._now = 2.0
    p.freeze(0.0)                                           # barge-in at 2.0: 1 s heard
    assert p.position_at(1.9) == pytest.approx(900.0)
    assert p.position_at(2.1) is None
    clock._now = 3.0
    p.resume(None)                                          # false interruption: on from 1 s
    p.mark_sent(bytes(32 * 1000))                           # re-sent from 1 s to 2 s
    assert p.position_at(1.9) == pytest.approx(900.0)      # the past stays as it was
    assert p.position_at(2.5) is None
    assert p.position_at(3.25) == pytest.approx(1250.0)
    # An underrun: everything sent played by 4.0; more audio comes at 4.5 and plays from there.
    assert p.lead_wait_s(4.5, 1000.0) is None
    assert p.position_at(3.9) == pytest.approx(1900.0)
    assert p.position_at(4.2) is None
    p.mark_sent(bytes(32 * 1000))
    assert p.position_at(4.75) == pytest.approx(2250.0)


def test_capture_clock_follows_the_fastest_arrivals_and_re_anchors_after_a_gap():
    c = CaptureClock()
    c.observe(320, 10.05)            # 20 ms of audio arrived 30 ms late
    c.observe(640, 10.045)           # the next one only 5 ms late: the better estimate
    c.observe(960, 10.2)             # a late arrival does not move the clock
    assert c.time_of(640) == pytest.approx(10.045)
    assert c.time_of(0) == pytest.approx(10.005)
    c.observe(1280, 20.0)            # the client stopped sending for seconds: re-anchored
    assert c.time_of(1280) == pytest.approx(20.0)


async def test_a_session_cancels_echo_only_while_its_answer_plays():
    def seconds() -> float:
        return REGISTRY.get_sample_value("voice_gateway_echo_cancel_seconds_total", {
            "service": "unknown", "model": "unknown", "variant": "stable"}) or 0.0

    before = seconds()
    clock = VirtualClock()
    b = FakeBackends.create(clock, speech=[(0.5, 1.5)], texts=["hello"], replies=["Hi, nice to meet you."])
    async with ScriptedSession(b, clock, GatewaySettings(redis_url="")) as s:
        ec = s.conv.echo.canceller
        await s.run_audio(2.0)
        assert not ec.active and ec.frames == 0          # the user's question: nothing plays
        await s.run_audio(0.6)
        assert s.of("output_audio_buffer.started") and ec.active
        await s.run_audio(4.0)
        stopped = s.first("output_audio_buffer.stopped").at
        assert not ec.active                              # a tail after the answer, then off
        played = stopped - s.first("output_audio_buffer.started").at
        # From the first audio to the end of the tail (give or take a chunk), at 100 frames a second.
        assert played + 0.6 - 0.05 <= ec.frames / 100 <= played + 0.6 + 0.05
    assert seconds() - before == pytest.approx(ec.frames / 100)


async def test_the_setting_turns_it_off():
    async with ScriptedSession(settings=GatewaySettings(redis_url="", echo_cancel=False)) as s:
        assert s.conv.echo is None


def _detect(mic: np.ndarray, far: np.ndarray) -> tuple[EchoDetector, list[tuple[float, str]]]:
    d, states = EchoDetector(), []
    for i in range(0, len(far) - FRAME, FRAME):
        d.push(float(np.dot(mic[i:i + FRAME], mic[i:i + FRAME])), float(np.dot(far[i:i + FRAME], far[i:i + FRAME])))
        if not states or states[-1][1] != d.state:
            states.append((i / RATE, d.state))
    return d, states


@pytest.mark.parametrize("delay_ms,level_db", [(60, -30), (250, -6), (400, -10)])
def test_an_echo_is_seen_within_two_seconds_and_kept(delay_ms, level_db):
    far = np.concatenate([speech(0), speech(3)])
    user = np.zeros(len(far))
    user[3 * RATE:3 * RATE + len(speech(4))] = speech(4)          # and the user talks over it
    d, states = _detect(room(far, delay_ms, level_db) + user, far)
    assert d.state == "echo" and [s for _, s in states] == ["unknown", "echo"]
    assert states[1][0] <= 2.0


def test_no_echo_is_seen_and_then_the_users_voice_is_left_alone():
    far = np.concatenate([speech(0), speech(3)])
    user = np.zeros(len(far))
    user[3 * RATE:3 * RATE + len(speech(4))] = speech(4)
    d, states = _detect(user + np.random.default_rng(3).normal(0, 30, len(far)), far)
    assert d.state == "none" and states[-1][0] <= 2.5
    # The canceller's output is then the mic itself: AEC3 ducks nothing of the user.
    mic = user
    out = run(EchoCanceller(), mic, ArrayReference(far))
    talk = slice(3 * RATE, 3 * RATE + len(speech(4)))
    assert np.array_equal(out[talk], mic[talk])


@pytest.mark.parametrize("noise_rms", [0.0, 30.0])
def test_a_quiet_listener_is_seen_to_have_no_echo_within_a_second(noise_rms):
    """A headset user listening in silence (room noise at most ~-60 dBFS) is
    known to carry no echo within a second of playing, before talking over
    the answer at 1.2 s: the voice is then not ducked by AEC3 at all."""
    far = np.concatenate([speech(0), speech(3)])
    user = np.zeros(len(far))
    user[int(1.2 * RATE):int(1.2 * RATE) + len(speech(4))] = speech(4)
    noise = np.random.default_rng(5).normal(0, noise_rms, len(far)) if noise_rms else 0.0
    _, states = _detect(user + noise, far)
    assert states[1][1] == "none" and states[1][0] <= 1.1, states


@pytest.mark.parametrize("far_clips,delay_ms,level_db,noise_rms", [
    ((0, 3), 400, -30, 30.0), ((0, 3), 250, -6, 30.0), ((0, 3), 60, -20, 30.0),
    ((1, 2), 100, -35, 0.0), ((1, 2), 190, -35, 0.0)])
def test_an_echo_is_never_taken_for_a_quiet_listener(far_clips, delay_ms, level_db, noise_rms):
    """The quick "none" of a quiet mic must not fire while an echo (at -35 dB
    or louder, after up to 400 ms) comes back and the user says nothing: not
    even where the answer starts softly (a soft played frame's echo is below
    the quiet floor, so it proves nothing)."""
    far = np.concatenate([speech(far_clips[0]), speech(far_clips[1])])
    noise = np.random.default_rng(5).normal(0, noise_rms, len(far)) if noise_rms else 0.0
    d, states = _detect(room(far, delay_ms, level_db) + noise, far)
    assert "none" not in [s for _, s in states], states


@pytest.mark.parametrize("start_s", [0.2, 0.8, 1.5])
@pytest.mark.parametrize("delay_ms,level_db", [(60, -30), (250, -6), (400, -10), (150, -30)])
def test_a_user_talking_over_the_first_answer_does_not_hide_a_real_echo(start_s, delay_ms, level_db):
    """Double talk before the echo is known: the mic carries the user's voice
    and, under it, the answer's echo; a low correlation then says nothing
    (the user's voice hides the echo), so the detector must not conclude
    "none" (the canceller's output would go unused and the echo-words guard
    off): it stays unknown and finds the echo once the user stops."""
    far = np.concatenate([speech(0), speech(3)])
    user = np.zeros(len(far))
    start = int(start_s * RATE)
    user[start:start + len(speech(4))] = speech(4)
    d, states = _detect(room(far, delay_ms, level_db) + user + np.random.default_rng(5).normal(0, 30, len(far)), far)
    assert [s for _, s in states] == ["unknown", "echo"], states


@pytest.mark.parametrize("start_s", [0.2, 1.5])
def test_with_no_echo_a_user_talking_from_the_start_is_known_to_have_none_after(start_s):
    """The price of the rule above: no echo, the user talks over the answer
    from its start; "none" comes once they stop (still or quiet mic)."""
    far = np.concatenate([speech(0), speech(3)])
    user = np.zeros(len(far))
    start = int(start_s * RATE)
    user[start:start + len(speech(4))] = speech(4)
    _, states = _detect(user + np.random.default_rng(5).normal(0, 300, len(far)), far)
    assert [s for _, s in states] == ["unknown", "none"], states
    assert states[1][0] >= start_s + len(speech(4)) / RATE, states    # not while they talk


@pytest.mark.parametrize("far_clips", [(0, 3), (1, 2)])
def test_a_voice_over_the_answer_on_a_headset_is_not_taken_for_an_echo(far_clips):
    """Speech over speech correlates by chance now and then; one high check
    must not make an echo of a headset user (the state is kept for the
    session, and AEC3 would then duck every later barge-in)."""
    far = np.concatenate([speech(far_clips[0]), speech(far_clips[1])])
    user = np.zeros(len(far))
    user[3 * RATE:3 * RATE + len(speech(4))] = speech(4)
    _, states = _detect(user + np.random.default_rng(3).normal(0, 3, len(far)), far)
    assert [s for _, s in states] == ["unknown", "none"], states


@pytest.mark.parametrize("start_s", [0.3, 0.45, 0.6])
def test_a_listener_known_to_have_no_echo_who_talks_early_into_the_next_answer_stays_without(start_s):
    """bench_e2e's second-answer barge-ins (2026-12-06): "none" from the
    quiet first answer, then the user's voice 0.3-0.6 s into the second
    answer. The voice's start and the answer's start are two steps that
    correlate at the lag between them; the detector took them for an echo
    within ~0.3 s, and AEC3 then ducked the barge-in (435-645 ms)."""
    first, second = speech(0), speech(3)
    tail = np.zeros(int(0.6 * RATE))                       # the canceller's tail between the answers
    far = np.concatenate([first, tail, second])
    user = np.zeros(len(far))
    start = len(first) + len(tail) + int(start_s * RATE)
    voice = speech(4)[:len(far) - start]
    user[start:start + len(voice)] = voice
    _, states = _detect(user, far)
    assert [s for _, s in states] == ["unknown", "none"], states
    assert states[1][0] < len(first) / RATE               # decided in the first answer


def test_no_canceller_runs_once_no_echo_is_known():
    """A headset user's session stops paying for AEC3 once the detector knows."""
    far = np.concatenate([speech(0), speech(3)])
    ec = EchoCanceller()
    run(ec, np.zeros(len(far)), ArrayReference(far))
    assert ec.detector.state == "none" and ec._apm is None
    assert ec.frames < 150      # AEC3 ran only until the first second told (vs ~900 frames played)


async def test_a_near_field_microphone_turns_the_canceller_off_for_its_session():
    """A client that says its mic is near_field (a headset) carries no echo:
    nothing goes through the canceller, so nothing ducks its voice."""
    clock = VirtualClock()
    b = FakeBackends.create(clock, speech=[(0.5, 1.5)], texts=["hello"], replies=["Hi, nice to meet you."])
    async with ScriptedSession(b, clock, GatewaySettings(redis_url="")) as s:
        await s.send({"type": "session.update",
                      "session": {"audio": {"input": {"noise_reduction": {"type": "near_field"}}}}})
        await s.run_audio(6.6)
        assert s.of("output_audio_buffer.started")
        ec = s.conv.echo.canceller
        assert ec.frames == 0 and not ec.active
        wire = s.of("session.updated")[-1].event["session"]["audio"]["input"]
        assert wire["noise_reduction"] == {"type": "near_field"}


@pytest.mark.parametrize("switch", [False, True])
async def test_switching_to_near_field_mid_answer_loses_no_sample(switch):
    clock = VirtualClock()
    b = FakeBackends.create(clock, speech=[(0.5, 1.5)], texts=["hello"], replies=["Hi, nice to meet you."])
    async with ScriptedSession(b, clock, GatewaySettings(redis_url="")) as s:
        await s.run_audio(2.9)
        assert s.conv.echo.canceller.active
        held = s.conv.echo.canceller.held_s
        if switch:
            await s.send({"type": "session.update",
                          "session": {"audio": {"input": {"noise_reduction": {"type": "near_field"}}}}})
        await s.run_audio(1.0)
        ec = s.conv.echo.canceller
        # Every sample in (the canceller holds back < 1 frame while active; the
        # last 20 ms chunk is still on its way to the pump).
        assert s.conv.ring.end_ms + 1000 * ec.held_s == pytest.approx(3880, abs=0.5)
        assert not switch or (ec.held_s == 0 and not ec.active and held >= 0)


@pytest.mark.parametrize("value", [{"type": "loud_room"}, "near_field", 3])
async def test_a_bad_noise_reduction_is_an_error_naming_it(value):
    async with ScriptedSession(settings=GatewaySettings(redis_url="")) as s:
        await s.send({"type": "session.update", "event_id": "e1",
                      "session": {"audio": {"input": {"noise_reduction": value}}}})
        await s.wait(0.1)
        err = s.first("error").event["error"]
        assert err["param"] == "session.audio.input.noise_reduction" and err["event_id"] == "e1"
        assert "near_field" in err["message"]
