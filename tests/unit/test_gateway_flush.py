"""The final transcription starts at the VAD's pause (its first unvoiced
frame after speech), a min_silence before the stop, on a virtual clock.

Invariants: the pause flushes the ASR (the final pass starts, the utterance
stays open); at the stop, the flush becomes the final only when no voiced
frame came after the pause's speech end, so speech that resumes after a
pause is never lost; the turn's text and the answer are the same as without
the flush, only earlier. Times are virtual and exact."""
from __future__ import annotations

from typing import Any

import pytest

from common.clock import VirtualClock
from services.gateway.fakes import FakeBackends
from services.gateway.scripted import ScriptedSession
from services.gateway.settings import GatewaySettings

QUESTION = "what is the weather like today"
REPLY = "Fine, thanks. It is sunny and warm all day."
SETTINGS = dict(redis_url="", silence_duration_ms=500, vad_min_silence_ms=160, vad_min_speech_ms=120,
                prefix_padding_ms=300, min_interrupt_ms=300, false_interruption_timeout_ms=800)
# Speech 0.5-2.5 s in 10 ms VAD frames: the pause is decided at 2.51 s, the
# stop at 2.66 s (160 ms of silence); the fake ASR needs 0.1 s per pass.
PAUSE_AT, STOP_AT, PASS_S = 2.51, 2.66, 0.1


def session(speech, texts, **settings) -> ScriptedSession:
    clock = VirtualClock()
    b = FakeBackends.create(clock, speech=speech, texts=texts, replies=(REPLY,))
    b.llm.token_s = 0.02
    return ScriptedSession(b, clock, GatewaySettings(**(SETTINGS | settings)))


def approx(t: float) -> Any:
    return pytest.approx(t, abs=1e-6)


def transcripts(s: ScriptedSession) -> list[str]:
    return [e.event["transcript"] for e in s.of("conversation.item.input_audio_transcription.completed")]


async def test_the_pause_starts_the_final_so_it_is_in_at_the_stop():
    async with session([(0.5, 2.5)], [QUESTION]) as s:
        await s.run_audio(6.0)
        assert (s.b.asr.flushes, s.b.asr.adopted) == (1, 1)
        assert transcripts(s) == [QUESTION]
        # The flush's pass (2.51 + 0.1 s) ended before the stop: the answer starts at
        # the stop (plus retrieval), not a pass after it as with force_eou alone.
        assert s.b.llm.requested_at == [approx(STOP_AT + s.b.rag.latency_s)]
        assert len(s.of("response.done")) == 1


async def test_without_the_flush_the_final_comes_a_pass_after_the_stop():
    async with session([(0.5, 2.5)], [QUESTION], asr_flush_on_pause=False) as s:
        await s.run_audio(6.0)
        assert (s.b.asr.flushes, s.b.asr.adopted) == (0, 0)
        assert transcripts(s) == [QUESTION]
        assert s.b.llm.requested_at == [approx(STOP_AT + PASS_S + s.b.rag.latency_s)]


async def test_speech_after_a_pause_is_not_lost():
    # 50 ms gap inside the sentence: a pause (flush of the first 5 words) but no
    # stop; the stop after 2.5 s has a later speech end, so that first flush is
    # not the final: the second pause's flush, which heard every word, is.
    async with session([(0.5, 1.5), (1.55, 2.5)], [QUESTION]) as s:
        await s.run_audio(6.0)
        assert s.b.asr.flushes == 2 and s.b.asr.adopted == 1
        assert transcripts(s) == [QUESTION]
        assert len(s.of("response.done")) == 1


async def test_a_flush_that_missed_later_speech_is_not_the_final(monkeypatch):
    # Only the first pause (after 5 of the 6 words) flushes; speech goes on, so
    # the stop's speech end is later than the flush's: a plain final over all
    # the audio, never the flush's shorter text.
    from services.gateway.turns import TurnTaker
    real = TurnTaker._speech_paused
    seen: list[float] = []

    async def first_only(self, end_ms: float) -> None:
        seen.append(end_ms)
        if len(seen) == 1:
            await real(self, end_ms)

    monkeypatch.setattr(TurnTaker, "_speech_paused", first_only)
    async with session([(0.5, 1.5), (1.55, 2.5)], [QUESTION]) as s:
        await s.run_audio(6.0)
        assert (s.b.asr.flushes, s.b.asr.adopted) == (1, 0)
        assert transcripts(s) == [QUESTION]
        assert len(s.of("response.done")) == 1
