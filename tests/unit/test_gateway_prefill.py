"""LLM prefill while the user speaks, on a virtual clock.

Invariants: as interims come in, the LLM is sent the history the answer will
have, with the words heard so far minus the last (it may still change), so
its cache already holds most of the answer's prompt when the turn ends; one
request at a time, only growing texts; none while a reply is playing (a
barge-in may rewrite the history) and none when the setting is off. The
answer itself sees the complete turn."""
from __future__ import annotations

from common.clock import VirtualClock
from services.gateway.fakes import FakeBackends
from services.gateway.scripted import ScriptedSession
from services.gateway.settings import GatewaySettings

QUESTION = "what is the weather like today in the city"
LONG = " ".join(["The weather is fine and sunny all day long."] * 6)
SETTINGS = dict(redis_url="", silence_duration_ms=500, vad_min_silence_ms=160, vad_min_speech_ms=120,
                prefix_padding_ms=300, min_interrupt_ms=300, false_interruption_timeout_ms=800)


def session(speech, texts, replies=("Fine, thanks.",), **settings) -> ScriptedSession:
    clock = VirtualClock()
    b = FakeBackends.create(clock, speech=speech, texts=texts, replies=replies)
    b.llm.token_s = 0.02
    return ScriptedSession(b, clock, GatewaySettings(**(SETTINGS | settings)))


def user_texts(messages) -> list[str]:
    return [m.content for m in messages if m.role == "user"]


async def test_the_llm_is_warmed_with_the_growing_turn_and_the_answer_sees_it_whole():
    async with session([(0.5, 3.0)], [QUESTION]) as s:
        await s.run_audio(6.0)
        prefills = [user_texts(m)[-1] for m in s.b.llm.prefills]
        assert prefills, "no prefill while the user spoke"
        # Each is a growing prefix of the question, without the word still being heard.
        words = QUESTION.split()
        for a, b in zip(prefills, prefills[1:]):
            assert len(b.split()) > len(a.split())
        for p in prefills:
            n = len(p.split())
            assert 3 <= n < len(words) and p == " ".join(words[:n])
        # The same history as the answer, up to the user's (then complete) turn.
        answer = s.b.llm.requests[0]
        assert user_texts(answer) == [QUESTION]
        assert [m.role for m in s.b.llm.prefills[-1]] == [m.role for m in answer]
        assert s.b.llm.prefills[-1][:-1] == answer[:-1]


async def test_no_prefill_when_off_or_while_a_reply_plays():
    async with session([(0.5, 3.0)], [QUESTION], llm_prefill=False) as s:
        await s.run_audio(6.0)
        assert s.b.llm.prefills == [] and len(s.b.llm.requests) == 1
    # A long reply is playing when the user talks over it: that turn warms nothing.
    async with session([(0.5, 1.5), (4.0, 6.5)], ["tell me a story", QUESTION],
                       replies=(LONG, "Fine.")) as s:
        await s.run_audio(4.0)
        before = len(s.b.llm.prefills)
        await s.run_audio(2.0)      # the barge-in speech, 4.0-6.0 s
        assert len(s.b.llm.prefills) == before
