"""Invariant: a backend lost in the middle of an answer (the LLM between
clauses, the TTS inside a clause) costs the client one error naming it and a
``response.done`` with status failed; the history keeps only what the client
got as audio (never the answer's unspoken part, which the assistant would
otherwise believe it said); the session goes on and the next turn is
answered once the backend is back, without a reconnect. Virtual clock."""
from __future__ import annotations

from common.clock import VirtualClock
from services.gateway.fakes import FakeBackends
from services.gateway.scripted import ScriptedSession
from services.gateway.settings import GatewaySettings

REPLY = "One two three. Four five six. Seven eight nine. Ten eleven twelve."


def session(**fake) -> ScriptedSession:
    clock = VirtualClock()
    b = FakeBackends.create(clock, speech=[], texts=[], replies=(REPLY, "Okay."))
    s = ScriptedSession(b, clock, GatewaySettings(redis_url="", first_clause_max_words=0,
                                                  first_clause_weak_words=0))
    for k, v in fake.items():
        obj, attr = k.split("__")
        setattr(getattr(b, obj), attr, v)
    return s


async def ask(s: ScriptedSession, text: str) -> None:
    await s.send({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}})
    await s.send({"type": "response.create"})


def failed_item(s: ScriptedSession):
    done = s.first("response.done").event["response"]
    assert done["status"] == "failed"
    assert done["status_details"]["error"]["code"] == "backend_unavailable"
    return s.conv.state.find(done["output"][0]["id"])


async def test_the_llm_lost_between_clauses():
    s = session(llm__token_s=0.4, tts__rtf=0.05)
    async with s:
        await ask(s, "count")
        await s.wait(2.0)           # "One two three." spoken, "Four five" still being generated
        s.b.llm.kill()
        await s.wait(1.0)
        err = s.first("error").event["error"]
        assert err["code"] == "backend_unavailable" and err["message"].startswith("llm at fake-llm")
        item = failed_item(s)
        assert item.text() == "One two three."
        assert s.b.tts.clauses == ["One two three."]
        s.b.llm.up = True
        await ask(s, "again")
        await s.wait(3.0)
        assert s.of("response.done")[1].event["response"]["status"] == "completed"
        history = s.b.llm.requests[-1]
        assert [m.content for m in history if m.role == "assistant"] == ["One two three."]


async def test_the_tts_lost_inside_a_clause_keeps_only_whole_clauses_sent():
    # 60 ms of audio per character, 200 ms chunks made at half real time: the
    # second clause ("Four five six.", 840 ms) takes ~0.4 s to synthesise.
    s = session(llm__token_s=0.01, tts__rtf=0.5)
    async with s:
        await ask(s, "count")
        for _ in range(200):
            await s.wait(0.02)
            if len(s.b.tts.clauses) == 2:
                break
        await s.wait(0.15)          # the second clause is partly synthesised
        s.b.tts.kill()
        await s.wait(2.0)
        err = s.first("error").event["error"]
        assert err["message"].startswith("tts at fake-tts")
        item = failed_item(s)
        assert item.text() == "One two three."          # not "One two three. Four five"
        truncated = s.first("conversation.item.truncated").event
        assert truncated["item_id"] == item.id
        s.b.tts.up = True
        await ask(s, "again")
        await s.wait(3.0)
        assert s.of("response.done")[1].event["response"]["status"] == "completed"
        assert [m.content for m in s.b.llm.requests[-1] if m.role == "assistant"] == ["One two three."]


async def test_nothing_spoken_nothing_kept():
    s = session(llm__first_token_s=1.0)
    async with s:
        await ask(s, "count")
        await s.wait(0.5)
        s.b.llm.kill()
        await s.wait(1.0)
        assert failed_item(s).text() == ""
        assert not s.of("conversation.item.truncated")     # no audio went out: nothing to cut
