"""Invariant: a tool defined with "sensitive": true is never called without
the user's yes in the turn before. The LLM's call of it becomes a spoken (or
written) question naming the tool and its arguments, and no function_call
item; a yes in the next turn makes that response the call, with the
arguments the LLM chose and without asking the LLM again; anything else
drops the call and is answered as usual; a question cut off by a barge-in
(never completed) leaves nothing waiting; other tools are called at once;
"sensitive" must be a boolean. Fake LLM, virtual clock."""
from __future__ import annotations

import json

import pytest

from services.gateway import confirm
from services.gateway.backends.types import ToolCall
from services.gateway.scripted import ScriptedSession
from tests.unit.test_gateway_tools import WEATHER, ask

DELETE = {"type": "function", "name": "delete_notes", "description": "Delete the user's notes in a folder.",
          "parameters": {"type": "object", "properties": {"folder": {"type": "string"}}}, "sensitive": True}
CALL = ToolCall("delete_notes", '{"folder": "work"}')


def session(*replies) -> ScriptedSession:
    return ScriptedSession(replies=replies)


async def setup(s: ScriptedSession, modality: str = "text") -> None:
    await s.send({"type": "session.update", "session": {"tools": [DELETE, WEATHER],
                                                        "output_modalities": [modality]}})


async def done_count(s: ScriptedSession, n: int) -> dict:
    """The n-th response.done, letting virtual time pass until it comes (audio is paced)."""
    for _ in range(200):
        if len(s.of("response.done")) >= n:
            return s.of("response.done")[n - 1].event
        await s.wait(0.1)
    raise AssertionError(f"no response.done #{n}: {s.types()[-20:]}")


def words(done: dict) -> str:
    part = done["response"]["output"][0]["content"][0]
    return part.get("text") or part.get("transcript") or ""


@pytest.mark.parametrize("modality", ["text", "audio"])
async def test_a_sensitive_call_asks_first_and_a_yes_makes_the_call(modality):
    async with session(CALL, "unused") as s:
        await setup(s, modality)
        await ask(s, "delete my work notes")
        first = await done_count(s, 1)
        await s.wait(10.0)                                  # heard to its end
        assert not s.of("response.function_call_arguments.done")
        assert first["response"]["output"][0]["type"] == "message"
        assert words(first) == "I'd run delete notes with folder: work. Shall I go ahead? Say yes to confirm."
        assert s.conv.state.pending_call["name"] == "delete_notes"
        llm_calls = len(s.b.llm.requests)
        await ask(s, "Yes, please.")
        await done_count(s, 2)
        assert len(s.b.llm.requests) == llm_calls           # the call needs no second LLM pass
        done = s.first("response.function_call_arguments.done").event
        assert done["name"] == "delete_notes" and json.loads(done["arguments"]) == {"folder": "work"}
        assert s.of("response.done")[-1].event["response"]["output"][0]["type"] == "function_call"
        assert s.conv.state.pending_call is None


async def test_anything_but_a_yes_drops_the_call_and_is_answered():
    async with session(CALL, "Alright, I won't.") as s:
        await setup(s)
        await ask(s, "delete my work notes")
        await ask(s, "no, wait, keep them")
        assert not s.of("response.function_call_arguments.done")
        assert words(s.of("response.done")[-1].event) == "Alright, I won't."
        assert s.conv.state.pending_call is None
        await ask(s, "yes")                                    # a yes now confirms nothing
        assert not s.of("response.function_call_arguments.done")


async def test_an_out_of_band_response_asks_and_nothing_can_confirm_it():
    async with session(CALL) as s:
        await setup(s)
        await s.send({"type": "response.create", "response": {"conversation": "none", "input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "delete my notes"}]}]}})
        await s.wait(1.0)
        assert not s.of("response.function_call_arguments.done")
        assert words(s.of("response.done")[-1].event).startswith("I'd run delete notes")
        assert s.conv.state.pending_call is None


async def test_other_tools_are_called_at_once():
    async with session(ToolCall("get_weather", '{"city": "Paris"}')) as s:
        await setup(s)
        await ask(s)
        assert s.first("response.function_call_arguments.done").event["name"] == "get_weather"


async def test_a_question_cut_off_leaves_nothing_waiting():
    async with session(CALL) as s:
        await setup(s, "audio")                                # the question is still being spoken
        await s.send({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "delete my notes"}]}})
        await s.send({"type": "response.create"})
        await s.wait(0.5)
        assert s.of("response.output_audio.delta")
        await s.send({"type": "response.cancel"})
        await s.wait(1.0)
        assert s.of("response.done")[-1].event["response"]["status"] == "cancelled"
        assert s.conv.state.pending_call is None


def test_yes_is_a_yes_and_a_hedge_is_not():
    for text in ("yes", "Yes please.", "yeah, go ahead", "OK", "do it", "Sure."):
        assert confirm.affirmative(text), text
    for text in ("no", "yes but wait", "okay, never mind", "what?", "maybe", ""):
        assert not confirm.affirmative(text), text


async def test_sensitive_must_be_a_boolean():
    async with session() as s:
        await s.send({"type": "session.update", "event_id": "e1",
                      "session": {"tools": [{**DELETE, "sensitive": "yes"}]}})
        err = s.of("error")[-1].event["error"]
        assert err["param"] == "session.tools[0].sensitive" and err["event_id"] == "e1"
