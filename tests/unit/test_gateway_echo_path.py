"""The echo canceller inside a session, on the virtual clock: the reference
the gateway builds (what its Playout says the client's speaker played, on the
mic's capture clock, resampled to 16 kHz) lines up with the real echo well
enough for AEC3 to remove it.

The client here is clients/echo.py's speaker fed with the server events as
they are emitted: the answer (real speech, from a TTS fake that speaks a
clip) plays from its arrival at real time and comes back into the 24 kHz
microphone 150 ms later at -6 dB with reverberation. Invariants: what reaches
VAD and ASR while the answer plays holds far less echo than the microphone
(> 12 dB less once the canceller has settled), and with the canceller off it
holds all of it; the user's own voice over the answer goes through, far
above what is left of the echo."""
from __future__ import annotations

import base64
from typing import AsyncIterator

import numpy as np

from clients.echo import EchoSpeaker, Room
from common.audio import read_wav, resample_pcm16
from common.clock import VirtualClock
from services.gateway.backends.types import AudioPiece, Priority
from services.gateway.fakes import FakeBackends, FakeTts
from services.gateway.scripted import STEP_S, ScriptedSession
from services.gateway.settings import GatewaySettings
from tests.procs import clips

RATE = 24000


class SpeakingTts(FakeTts):
    """Every clause is spoken as the project's clips, back to back (real speech), in 200 ms pieces."""

    def __init__(self, clock) -> None:
        super().__init__(clock)
        pcm = b"".join(read_wav(p)[0] for p, _ in clips()[:3])
        self.pcm = pcm

    async def synthesize(self, text: str, voice: str, speed: float,
                         priority: Priority = Priority.URGENT) -> AsyncIterator[AudioPiece]:
        self.clauses.append(text)
        step = 16000 * 2 // 5
        for off in range(0, len(self.pcm), step):
            await self.clock.sleep(0.01)
            yield AudioPiece(self.pcm[off:off + step], 16000)


USER_AT_S = 10.0


def user_voice() -> np.ndarray:
    """A clip the answer does not contain, at 24 kHz, spoken from USER_AT_S."""
    pcm, rate = read_wav(clips()[4][0])
    return np.frombuffer(resample_pcm16(pcm, rate, RATE), dtype="<i2").astype(np.float64)


async def talk_over_speakers(echo_cancel: bool, user: bool = False,
                             onset_pause: bool = False) -> tuple[np.ndarray, np.ndarray, list]:
    """(mic audio at 24 kHz, audio handed to VAD/ASR at 16 kHz, the session's
    events); with ``user`` the user talks over the answer from USER_AT_S (the
    fake VAD ignores it; the answer goes on unless ``onset_pause``, the echo
    onset rule, pauses it)."""
    clock = VirtualClock()
    b = FakeBackends.create(clock, speech=[(0.5, 1.5)], texts=["tell me a story"], replies=["Once upon a time."])
    b.tts = SpeakingTts(clock)
    settings = GatewaySettings(redis_url="", echo_cancel=echo_cancel, audio_lead_ms=1000,
                               echo_onset_pause=onset_pause)
    speaker = EchoSpeaker(RATE, RATE, Room(delay_ms=150, level_db=-6, noise_dbfs=-70),
                          lambda t: int(round(t * RATE)))
    fed: list[bytes] = []
    async with ScriptedSession(b, clock, settings, input_rate=RATE) as s:
        real_feed = s.conv.turns.feed

        async def feed(pcm16k: bytes) -> None:
            fed.append(pcm16k)
            await real_feed(pcm16k)
        s.conv.turns.feed = feed
        seen, n = 0, int(RATE * STEP_S)
        mic = bytearray()
        voice = user_voice() if user else np.zeros(0)
        at = int(USER_AT_S * RATE)
        for k in range(int(16 / STEP_S)):             # the question, then ~14 s of the answer
            while seen < len(s.events):               # the client hears what was sent so far
                ev = s.events[seen]
                speaker.on_event(ev.event, ev.at)
                seen += 1
            await clock.advance(STEP_S, step=STEP_S)
            own = np.zeros(n)
            lo, hi = max(k * n - at, 0), max((k + 1) * n - at, 0)
            piece = voice[lo:hi]
            own[n - len(piece):] = piece
            frame = speaker.mix(k * n, own.astype("<i2").tobytes())
            mic += frame
            await s.conv.handle({"type": "input_audio_buffer.append", "audio": base64.b64encode(frame).decode()})
        await clock.advance(0.1, step=STEP_S)
        assert s.of("output_audio_buffer.started")
        assert not s.of("output_audio_buffer.cleared") or not echo_cancel or onset_pause
        events = list(s.events)
    x = np.frombuffer(bytes(mic), dtype="<i2").astype(np.float64)
    y = np.frombuffer(b"".join(fed), dtype="<i2").astype(np.float64)
    return x, y, events


def db(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(a ** 2) / max(np.mean(b ** 2), 1e-9)))


def seconds(x: np.ndarray, rate: int, a: float, b: float) -> np.ndarray:
    return x[int(a * rate):int(b * rate)]


async def test_the_echo_of_the_answer_is_removed_before_vad_and_asr():
    mic, out, _ = await talk_over_speakers(echo_cancel=True)
    # The answer plays from ~2.2 s; AEC3 has settled by 8 s.
    mic, out = seconds(mic, RATE, 8, 15), seconds(out, 16000, 8, 15)
    assert np.mean(mic ** 2) > 1e5                   # there is echo to remove (-6 dB of speech)
    assert db(mic, out) > 12.0


async def test_the_users_voice_over_the_answer_goes_through():
    _, alone, _ = await talk_over_speakers(echo_cancel=True)
    _, talking, _ = await talk_over_speakers(echo_cancel=True, user=True)
    over = len(user_voice()) / RATE
    # Far above what is left of the echo: the VAD hears the user, not the answer.
    assert db(seconds(talking, 16000, USER_AT_S, USER_AT_S + over),
              seconds(alone, 16000, USER_AT_S, USER_AT_S + over)) > 15.0


async def test_without_the_canceller_the_echo_reaches_vad_and_asr():
    mic, out, _ = await talk_over_speakers(echo_cancel=False)
    assert abs(db(seconds(mic, RATE, 8, 15), seconds(out, 16000, 8, 15))) < 1.0


async def test_the_users_voice_over_the_answer_pauses_it_at_once_and_the_echo_alone_never():
    # The echo onset rule (echo_onset.py) on real AEC3 output: the answer's
    # echo alone never pauses it; the user's voice pauses it within ~0.15 s,
    # before any VAD could (the fake VAD here hears nothing at all).
    *_, alone = await talk_over_speakers(echo_cancel=True, onset_pause=True)
    assert not [e for e in alone if e.event["type"] == "output_audio_buffer.cleared"]
    *_, talking = await talk_over_speakers(echo_cancel=True, user=True, onset_pause=True)
    cleared = [e.at for e in talking if e.event["type"] == "output_audio_buffer.cleared"]
    first_voiced = USER_AT_S + np.argmax(np.abs(user_voice()) > 1000) / RATE
    assert cleared and first_voiced - 0.1 <= cleared[0] <= first_voiced + 0.15
