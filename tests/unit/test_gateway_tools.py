"""Invariant: a Realtime client's function tools reach the LLM and its call
comes back in the GA event shape. session.tools (or response.create's) are
offered with the tool_choice in force (auto, required, a named function;
"none" offers nothing); the LLM's call becomes a function_call item with
response.output_item.added, response.function_call_arguments.delta/done
(call_id, name, arguments), response.output_item.done and response.done
listing the item as the only output, for text and audio responses alike;
the client's function_call_output then reaches the LLM as the tool's
result named after the call, and the next response answers in words.
Malformed tools and choices are errors naming the field; the session goes on.
Driven through ScriptedSession with the fake LLM."""
from __future__ import annotations

import json
import re

import pytest

from common.clock import VirtualClock
from services.gateway.backends.types import ChatMessage, ToolCall, ToolSpec, Tools
from services.gateway.fakes import FakeBackends
from services.gateway.scripted import ScriptedSession
from services.gateway.settings import GatewaySettings
from tests.unit.test_gateway_preempt import SETTINGS, client_view

WEATHER = {"type": "function", "name": "get_weather", "description": "Current weather of a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
CALL = ToolCall("get_weather", '{"city": "Paris"}')
ANSWER = "It is sunny in Paris."
CALL_EVENTS = ["response.created", "response.output_item.added", "conversation.item.added",
               "response.function_call_arguments.delta", "response.function_call_arguments.done",
               "response.output_item.done", "conversation.item.done", "response.done"]


async def ask(s: ScriptedSession, text: str = "what is the weather in Paris?", **response) -> None:
    await s.send({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}})
    await s.send({"type": "response.create", **({"response": response} if response else {})})
    await s.wait(1.0)


def after(s: ScriptedSession, type: str) -> list[str]:
    """The event types from the last ``type`` on (audio deltas left out)."""
    types = s.types()
    return types[len(types) - 1 - types[::-1].index(type):]


@pytest.mark.parametrize("modality", ["text", "audio"])
async def test_a_call_comes_out_as_a_function_call_item_with_its_events(modality):
    async with ScriptedSession(replies=(CALL,)) as s:
        await s.send({"type": "session.update", "session": {"tools": [WEATHER], "output_modalities": [modality]}})
        await ask(s)
        assert after(s, "response.created") == CALL_EVENTS
        assert not s.of("response.output_audio.delta") and not s.of("response.output_text.delta")
        added = s.first("response.output_item.added").event["item"]
        assert added["type"] == "function_call" and added["status"] == "in_progress"
        delta = s.first("response.function_call_arguments.delta").event
        done = s.first("response.function_call_arguments.done").event
        assert delta["delta"] == CALL.arguments and delta["call_id"] == done["call_id"]
        assert done["call_id"].startswith("call_")
        assert done["name"] == "get_weather" and json.loads(done["arguments"]) == {"city": "Paris"}
        assert done["item_id"] == added["id"] and done["response_id"] == delta["response_id"]
        item = s.first("response.output_item.done").event["item"]
        assert item == {"id": added["id"], "object": "realtime.item", "type": "function_call", "status": "completed",
                        "call_id": done["call_id"], "name": "get_weather", "arguments": CALL.arguments}
        resp = s.first("response.done").event["response"]
        assert resp["status"] == "completed" and resp["output"] == [item]
        assert s.conv.state.items[-1].type == "function_call"
        offered = s.b.llm.tools[-1]
        assert offered.choice == "auto" and [t.name for t in offered.specs] == ["get_weather"]
        assert json.loads(offered.specs[0].parameters_json) == WEATHER["parameters"]


async def test_the_output_goes_back_as_the_tools_result_and_the_answer_is_spoken():
    async with ScriptedSession(replies=(CALL, ANSWER)) as s:
        await s.send({"type": "session.update", "session": {"tools": [WEATHER], "output_modalities": ["text"]}})
        await ask(s)
        call_id = s.first("response.function_call_arguments.done").event["call_id"]
        await s.send({"type": "conversation.item.create", "item": {
            "type": "function_call_output", "call_id": call_id, "output": '{"sky": "sunny", "temp_c": 21}'}})
        await s.send({"type": "response.create"})
        await s.wait(1.0)
        msgs = s.b.llm.requests[-1]
        assert msgs[-2:] == [
            ChatMessage("assistant", CALL.arguments, name="get_weather", tool_call_id=call_id),
            ChatMessage("tool", '{"sky": "sunny", "temp_c": 21}', name="get_weather", tool_call_id=call_id)]
        second = s.of("response.done")[-1].event["response"]
        assert second["output"][0]["type"] == "message"
        assert second["output"][0]["content"] == [{"type": "output_text", "text": ANSWER}]
        assert after(s, "response.created")[:3] == [
            "response.created", "response.output_item.added", "conversation.item.added"]


async def test_with_tools_a_spoken_answer_keeps_the_message_events():
    async with ScriptedSession(replies=(ANSWER,)) as s:
        await s.send({"type": "session.update", "session": {"tools": [WEATHER]}})
        await ask(s, "hello")
        await s.wait(5.0)
        types = after(s, "response.created")
        assert types[:4] == ["response.created", "response.output_item.added", "conversation.item.added",
                             "response.content_part.added"]
        assert "response.function_call_arguments.done" not in types
        assert s.of("response.output_audio.delta")
        resp = s.of("response.done")[-1].event["response"]
        assert resp["output"][0]["content"][0]["transcript"] == ANSWER


@pytest.mark.parametrize("session_choice, response, expected", [
    ("auto", {}, Tools((ToolSpec("get_weather"),), "auto")),
    ("required", {}, Tools((ToolSpec("get_weather"),), "required")),
    ({"type": "function", "name": "get_weather"}, {}, Tools((ToolSpec("get_weather"),), "function", "get_weather")),
    ("none", {}, None),
    ("auto", {"tool_choice": "none"}, None),
    ("none", {"tool_choice": "required"}, Tools((ToolSpec("get_weather"),), "required")),
    ("auto", {"tools": []}, None),
    ("auto", {"tools": [dict(WEATHER, name="get_time")], "tool_choice": {"type": "function", "name": "get_time"}},
     Tools((ToolSpec("get_time"),), "function", "get_time")),
])
async def test_tool_choice_of_the_session_and_of_one_response(session_choice, response, expected):
    async with ScriptedSession(replies=("Fine.",)) as s:
        await s.send({"type": "session.update", "session": {"tools": [WEATHER], "tool_choice": session_choice,
                                                            "output_modalities": ["text"]}})
        assert s.first("session.updated").event["session"]["tool_choice"] == session_choice
        await ask(s, **response)
        got = s.b.llm.tools[-1]
        if expected is None:
            assert got is None
        else:
            assert (got.choice, got.name, [t.name for t in got.specs]) == (
                expected.choice, expected.name, [t.name for t in expected.specs])
        assert not s.of("error")


async def test_no_tools_no_offer_and_the_old_event_order():
    async with ScriptedSession(replies=("Fine.",)) as s:
        await s.send({"type": "session.update", "session": {"output_modalities": ["text"]}})
        await ask(s)
        assert s.b.llm.tools == [None]
        assert after(s, "response.created")[:2] == ["response.created", "response.output_item.added"]


@pytest.mark.parametrize("session, param", [
    ({"tools": [{"type": "mcp", "name": "x"}]}, "session.tools[0].type"),
    ({"tools": [{"type": "function", "name": "get weather"}]}, "session.tools[0].name"),
    ({"tools": [WEATHER, WEATHER]}, "session.tools[1].name"),
    ({"tools": [{"type": "function", "name": "f", "parameters": {"type": "array"}}]}, "session.tools[0].parameters"),
    ({"tools": [{"type": "function", "name": "f", "parameters": "{}"}]}, "session.tools[0].parameters"),
    ({"tools": ["f"]}, "session.tools[0]"),
    ({"tool_choice": "sometimes"}, "session.tool_choice"),
    ({"tool_choice": {"type": "function"}}, "session.tool_choice"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "name": "nope"}}, "session.tool_choice.name"),
    ({"tool_choice": 3}, "session.tool_choice"),
])
async def test_malformed_tools_are_errors_naming_the_field(session, param):
    async with ScriptedSession() as s:
        await s.send({"type": "session.update", "event_id": "e1", "session": session})
        err = s.first("error").event["error"]
        assert err["param"] == param and err["event_id"] == "e1", err
        assert not s.of("session.updated")
        assert s.conv.state.config.tools == [] and s.conv.state.config.tool_choice == "auto"


async def test_a_response_naming_a_tool_it_does_not_have_is_refused():
    async with ScriptedSession() as s:
        await s.send({"type": "session.update", "session": {"tools": [WEATHER]}})
        await s.send({"type": "response.create", "event_id": "r1",
                      "response": {"tool_choice": {"type": "function", "name": "get_time"}}})
        err = s.first("error").event["error"]
        assert err["param"] == "response.tool_choice.name" and "get_weather" in err["message"]
        assert not s.of("response.created")


async def test_a_spoken_turn_gets_the_same_call_with_and_without_preemption():
    """A preemptive run's call is held like its words: released at the turn's end, in order."""
    views = []
    for on in (True, False):
        clock = VirtualClock()
        b = FakeBackends.create(clock, speech=[(0.5, 2.5)], texts=["weather in Paris"], replies=(CALL,))
        async with ScriptedSession(b, clock, GatewaySettings(**SETTINGS)) as s:
            await s.send({"type": "session.update", "session": {"tools": [WEATHER], "audio": {"input": {
                "turn_detection": {"type": "server_vad", "preemptive_generation": on}}}}})
            await s.run_audio(5.0)
            assert after(s, "response.created") == CALL_EVENTS
            assert (b.llm.requested_at[0] < 3.0) == on
            view = json.dumps([e for e in client_view(s) if e.get("type") != "session.updated"])
            views.append(re.sub(r"call_[0-9a-f]+", "<call>", view))
    assert views[0] == views[1]


def test_the_wire_carries_tools_both_ways():
    """Gateway → LLM proto → the LLM engine's request, and the call back."""
    from common.stubs import llm_pb2
    from services.gateway.backends import convert
    from services.gateway.backends.types import LlmUsage
    from services.llm import convert as llm_convert
    from services.llm.schema import ToolCall as LlmToolCall, ToolChoice

    tools = Tools((ToolSpec("get_weather", "w", '{"type": "object"}'),), "function", "get_weather")
    msgs = [ChatMessage("assistant", "{}", name="get_weather", tool_call_id="call_1")]
    pb = convert.generate_request(msgs, [], 10, "r", tools=tools)
    req = llm_convert.request_from_pb(llm_pb2.GenerateRequest.FromString(pb.SerializeToString()))
    assert req.tool_choice is ToolChoice.FUNCTION and req.tool_choice_name == "get_weather"
    assert [(t.name, t.description, t.parameters_json) for t in req.tools] == [
        ("get_weather", "w", '{"type": "object"}')]
    assert (req.messages[0].name, req.messages[0].tool_call_id) == ("get_weather", "call_1")
    assert not convert.generate_request(msgs, [], 10, "r").tools
    assert convert.prefill_request(msgs, "p", tools=tools).tool_choice == llm_pb2.TOOL_CHOICE_FUNCTION
    out = llm_convert.event_to_pb(LlmToolCall("f", "{}"))
    assert convert.generate_event(out, LlmUsage()) == ToolCall("f", "{}")
    with pytest.raises(ValueError, match="tool_choice 7"):
        llm_convert.request_from_pb(llm_pb2.GenerateRequest(tool_choice=7))
