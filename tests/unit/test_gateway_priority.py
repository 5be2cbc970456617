"""Invariant: the gateway gives each request to the speech services the class
that says whether a person is waiting for it now. The answer's generation
and its first clause's synthesis are urgent; prefill is background; a later
clause is background while the audio before it still has a while to play,
and urgent when the listener is about to run out of audio. On the wire the
class is always explicit. Scripted fakes record what was asked, on a virtual clock."""
from __future__ import annotations

from common.clock import VirtualClock
from common.stubs import common_pb2
from services.gateway.backends import convert
from services.gateway.backends.types import ChatMessage, Priority
from services.gateway.fakes import FakeBackends
from services.gateway.scripted import ScriptedSession
from services.gateway.settings import GatewaySettings

U, B = Priority.URGENT, Priority.BACKGROUND
QUESTION = "what is the weather like today in the city"
REPLY = ("Sure, it is sunny. The afternoon brings a few clouds but no rain, "
         "and the evening stays warm. Enjoy your walk.")
SETTINGS = dict(redis_url="", silence_duration_ms=500, vad_min_silence_ms=160, vad_min_speech_ms=120,
                prefix_padding_ms=300, min_interrupt_ms=300, false_interruption_timeout_ms=800)


def session(token_s: float = 0.02) -> ScriptedSession:
    clock = VirtualClock()
    b = FakeBackends.create(clock, speech=[(0.5, 3.0)], texts=[QUESTION], replies=(REPLY,))
    b.llm.token_s = token_s
    return ScriptedSession(b, clock, GatewaySettings(**SETTINGS))


async def test_the_answer_and_its_first_clause_are_urgent_later_clauses_background():
    async with session() as s:
        await s.run_audio(6.0)
        await s.wait(15.0)
        assert s.b.llm.prefills, "no prefill while the user spoke"   # background: see the wire test
        assert s.b.llm.priorities == [U]
        tts = s.b.tts
        assert len(tts.clauses) >= 3, tts.clauses
        # The LLM is fast here: every later clause is ready while the first one still plays.
        assert tts.priorities == [U] + [B] * (len(tts.clauses) - 1)


async def test_a_later_clause_is_urgent_when_the_listener_is_about_to_run_out_of_audio():
    async with session(token_s=0.4) as s:    # the LLM slower than speech
        await s.run_audio(6.0)
        await s.wait(30.0)
        tts = s.b.tts
        assert tts.priorities[0] is U and U in tts.priorities[1:], list(zip(tts.clauses, tts.priorities))


def test_the_class_is_explicit_on_the_wire():
    msgs = [ChatMessage("user", "hi")]
    assert convert.generate_request(msgs, (), 0, "r").priority == common_pb2.PRIORITY_URGENT
    pre = convert.prefill_request(msgs, "p")
    assert pre.prefill and pre.priority == common_pb2.PRIORITY_BACKGROUND
    assert convert.synthesize_request("Hi.", "", 1.0).priority == common_pb2.PRIORITY_URGENT
    assert convert.synthesize_request("Hi.", "", 1.0, B).priority == common_pb2.PRIORITY_BACKGROUND
