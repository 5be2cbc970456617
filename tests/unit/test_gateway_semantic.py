"""semantic_vad on a virtual clock: a session asks for it as the Realtime API
defines it (type and eagerness) and session.updated echoes it; the VAD stream
is reopened asking for end-of-turn scores; a stop the model calls complete
ends the turn after the short window, one it calls incomplete waits the long
window of the session's eagerness (low longest, high shortest, auto =
medium), so a pause the server_vad window would split stays one turn; a stop
without a score gets silence_duration_ms. Bad values are refused with an
error naming the field. A Realtime API voice name (the agents SDK sends
"ash") gets the TTS default voice; the session store keeps the type and
eagerness. Times are virtual and exact (to one 20 ms step)."""
from __future__ import annotations

import pytest

from common.clock import VirtualClock
from services.gateway.fakes import FakeBackends
from services.gateway.scripted import STEP_S, ScriptedSession
from services.gateway.session import SessionConfig
from services.gateway.settings import GatewaySettings

SETTINGS = dict(redis_url="", silence_duration_ms=500, vad_min_silence_ms=160, vad_min_speech_ms=120,
                prefix_padding_ms=300, semantic_complete_ms=200, semantic_high_ms=800,
                semantic_medium_ms=1500, semantic_low_ms=3000, semantic_threshold=0.5)


def session(speech, texts, turn_probs=(), **settings) -> ScriptedSession:
    clock = VirtualClock()
    b = FakeBackends.create(clock, speech=speech, texts=texts, replies=("Okay.",), turn_probs=turn_probs)
    return ScriptedSession(b, clock, GatewaySettings(**(SETTINGS | settings)))


def semantic(eagerness: str | None = "auto", **extra) -> dict:
    td = {"type": "semantic_vad", **extra}
    if eagerness is not None:
        td["eagerness"] = eagerness
    return {"type": "session.update", "session": {"audio": {"input": {"turn_detection": td}}}}


def close(a: float, b: float, tol: float = STEP_S + 1e-6) -> bool:
    return abs(a - b) <= tol


async def test_semantic_vad_is_accepted_echoed_and_asks_the_vad_for_scores():
    async with session([], []) as s:
        assert not s.b.vad.params[-1].end_of_turn
        await s.send(semantic("low"))
        assert not s.of("error")
        td = s.first("session.updated").event["session"]["audio"]["input"]["turn_detection"]
        assert td["type"] == "semantic_vad" and td["eagerness"] == "low"
        assert td["create_response"] is True and td["interrupt_response"] is True
        assert s.b.vad.params[-1].end_of_turn
        await s.send({"type": "session.update", "session": {"audio": {"input": {
            "turn_detection": {"type": "server_vad"}}}}})
        td = s.of("session.updated")[-1].event["session"]["audio"]["input"]["turn_detection"]
        assert td["type"] == "server_vad" and "eagerness" not in td
        assert not s.b.vad.params[-1].end_of_turn


async def test_a_complete_stop_ends_the_turn_after_the_short_window():
    async with session([(0.5, 2.5)], ["what time is it"], turn_probs=[0.9]) as s:
        await s.send(semantic())
        await s.run_audio(4.0)
        assert close(s.first("input_audio_buffer.committed").at, 2.5 + 0.2)
        assert len(s.of("response.created")) == 1


async def test_an_incomplete_pause_waits_so_the_sentence_is_one_turn():
    # An 800 ms pause splits this sentence under server_vad's 500 ms window
    # (test_gateway_turns.py); here the model calls the pause incomplete.
    async with session([(0.5, 1.5), (2.3, 3.0)], ["eight of spades", "four of clubs"],
                       turn_probs=[0.1, 0.95]) as s:
        await s.send(semantic("auto"))
        await s.run_audio(4.5)
        committed = s.of("input_audio_buffer.committed")
        assert len(committed) == 1 and close(committed[0].at, 3.0 + 0.2)
        assert [e.event["transcript"] for e in s.of("conversation.item.input_audio_transcription.completed")] \
            == ["eight of spades four of clubs"]
        assert len(s.of("response.created")) == 1


@pytest.mark.parametrize("eagerness, wait_s", [("high", 0.8), ("medium", 1.5), ("auto", 1.5), ("low", 3.0)])
async def test_eagerness_sets_how_long_an_incomplete_turn_waits(eagerness, wait_s):
    async with session([(0.5, 2.0)], ["and then"], turn_probs=[0.2]) as s:
        await s.send(semantic(eagerness))
        await s.run_audio(2.0 + wait_s + 0.5)
        assert close(s.first("input_audio_buffer.committed").at, 2.0 + wait_s)


async def test_a_stop_without_a_score_gets_the_server_vad_window():
    async with session([(0.5, 2.0)], ["hello"], turn_probs=[]) as s:
        await s.send(semantic("low"))
        await s.run_audio(3.5)
        assert close(s.first("input_audio_buffer.committed").at, 2.0 + 0.5)


async def test_server_vad_ignores_scores():
    async with session([(0.5, 2.0)], ["hello"], turn_probs=[0.99]) as s:
        await s.run_audio(3.5)
        assert close(s.first("input_audio_buffer.committed").at, 2.0 + 0.5)


@pytest.mark.parametrize("td, param", [
    ({"type": "semantic_vad", "eagerness": "sometimes"}, "eagerness"),
    ({"type": "server_vad", "eagerness": "low"}, "eagerness"),
    ({"type": "semantic_vad", "eagerness": 3}, "eagerness"),
    ({"type": "magic_vad"}, "type"),
])
async def test_bad_turn_detection_is_refused_and_changes_nothing(td, param):
    async with session([], []) as s:
        await s.send({"type": "session.update", "event_id": "u1",
                      "session": {"audio": {"input": {"turn_detection": td}}}})
        err = s.first("error").event["error"]
        assert err["param"] == f"session.audio.input.turn_detection.{param}" and err["event_id"] == "u1"
        assert not s.of("session.updated")
        assert s.conv.state.config.turn_detection.type == "server_vad"


@pytest.mark.parametrize("voice, asked", [("ash", ""), ("alloy", ""), ("en_US-joe-medium", "en_US-joe-medium")])
async def test_a_realtime_api_voice_name_gets_the_default_voice(voice, asked):
    # openai-agents' RealtimeAgent asks for "ash": a voice, not a local one.
    async with session([(0.5, 1.5)], ["hello"], turn_probs=[0.9]) as s:
        await s.send({"type": "session.update", "session": {"audio": {"output": {"voice": voice}}}})
        assert s.first("session.updated").event["session"]["audio"]["output"]["voice"] == voice
        await s.run_audio(3.0)
        assert s.b.tts.voices and set(s.b.tts.voices) == {asked}


async def test_semantic_vad_survives_the_session_store():
    async with session([], []) as s:
        await s.send(semantic("high"))
        restored = SessionConfig.from_store(s.conv.state.config.to_store())
        assert (restored.turn_detection.type, restored.turn_detection.eagerness) == ("semantic_vad", "high")
    # a session stored before semantic_vad existed reads as server_vad
    old = SessionConfig().to_store()
    for key in ("type", "eagerness"):
        del old["turn_detection"][key]
    assert SessionConfig.from_store(old).turn_detection.type == "server_vad"
