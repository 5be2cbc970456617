"""Invariant: an answer whose audio comes slower than it plays leaves the
listener in silence between chunks, and each such silence is counted
(``voice_gateway_audio_underrun_seconds``, with its length); an answer
synthesised faster than real time has none. Virtual clock, fake backends."""
from __future__ import annotations

from prometheus_client import REGISTRY

from common.clock import VirtualClock
from services.gateway.fakes import FakeBackends
from services.gateway.playout import Playout
from services.gateway.scripted import ScriptedSession
from services.gateway.settings import GatewaySettings

REPLY = "One two three. Four five six. Seven eight nine."
METRIC = "voice_gateway_audio_underrun_seconds"


def underruns() -> tuple[float, float]:
    count = total = 0.0
    for family in REGISTRY.collect():
        for smp in family.samples:
            if smp.name == f"{METRIC}_count":
                count += smp.value
            elif smp.name == f"{METRIC}_sum":
                total += smp.value
    return count, total


async def answer_with_tts(rtf: float) -> tuple[float, float]:
    clock = VirtualClock()
    b = FakeBackends.create(clock, speech=[], texts=[], replies=(REPLY,))
    b.tts.rtf = rtf
    b.llm.token_s = 0.01
    before = underruns()
    async with ScriptedSession(b, clock, GatewaySettings(redis_url="")) as s:
        await s.send({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "count"}]}})
        await s.send({"type": "response.create"})
        await s.wait(12.0)
        assert s.first("response.done").event["response"]["status"] == "completed"
    after = underruns()
    return after[0] - before[0], after[1] - before[1]


async def test_audio_made_slower_than_real_time_is_counted_as_underruns():
    # 200 ms chunks made in 300 ms: the listener waits ~100 ms before each.
    n, seconds = await answer_with_tts(1.5)
    assert n >= 5
    assert 0.05 * n <= seconds <= 0.2 * n


async def test_audio_made_faster_than_real_time_has_no_underrun():
    assert await answer_with_tts(0.05) == (0.0, 0.0)


def test_playout_records_the_silence_of_an_underrun():
    clock = VirtualClock()
    p = Playout(clock, 16000)
    p.start(1.0)
    p.mark_sent(bytes(32 * 1000))            # 1 s sent at 1.0: played out by 2.0
    assert p.lead_wait_s(1.5, 1000.0) is None and p.gaps == []
    assert p.lead_wait_s(2.25, 1000.0) is None   # the next audio is ready 250 ms late
    assert p.gaps == [0.25]
