"""Function tools through the whole stack (gateway + real LLM, TTS):
a Realtime client defines a weather tool, asks in text, and gets the call
in the GA event shape (output_item.added, function_call_arguments.delta and
.done with call_id, name and arguments, output_item.done, response.done
listing the function_call item), the arguments JSON valid against the
tool's schema; it then sends the function's output and gets an answer in
words (audio with its transcript, or text). Text-only and audio sessions
alike. The call is forced (tool_choice required / named): whether the 135M
model would choose to call is not what is tested."""
from __future__ import annotations

import json

import jsonschema
import pytest

from clients import events
from clients.realtime import RealtimeClient

pytestmark = pytest.mark.slow
RATE = 24000
TIMEOUT = 90
SCHEMA = {"type": "object", "properties": {
    "city": {"type": "string", "maxLength": 40},
    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city", "unit"]}
WEATHER = {"type": "function", "name": "get_weather", "description": "Current weather of a city.",
           "parameters": SCHEMA}
CALL_EVENTS = ["response.output_item.added", "conversation.item.added", "response.function_call_arguments.delta",
               "response.function_call_arguments.done", "response.output_item.done", "conversation.item.done",
               "response.done"]


def of(rid: str):
    return lambda e: e.get("response_id") == rid or (e.get("response") or {}).get("id") == rid


@pytest.mark.parametrize("modality, choice", [("text", "required"),
                                              ("audio", {"type": "function", "name": "get_weather"})])
async def test_a_client_defined_tool_is_called_and_its_output_answered(stack, modality, choice):
    async with RealtimeClient(stack.ws_url) as rt:
        await rt.update_session(events.session_config(
            input_rate=RATE, output_rate=RATE, output_modalities=[modality], turn_detection=False,
            tools=[WEATHER], tool_choice=choice))
        await rt.create_user_text("What is the weather in Paris right now?")
        mark = rt.mark()
        await rt.create_response()
        created = await rt.wait_for("response.created", since=mark, timeout=TIMEOUT)
        rid = created.get("response")["id"]
        done = await rt.wait_for("response.done", since=mark, where=of(rid), timeout=TIMEOUT)
        types = [t for t in rt.log.types(created.index + 1) if t != "rate_limits.updated"]
        assert types[:len(CALL_EVENTS)] == CALL_EVENTS, types
        args_done = rt.log.find("response.function_call_arguments.done", since=mark)
        delta = rt.log.find("response.function_call_arguments.delta", since=mark)
        call_id = args_done.get("call_id")
        assert call_id and delta.get("call_id") == call_id and args_done.get("name") == "get_weather"
        assert delta.get("delta") == args_done.get("arguments")
        jsonschema.validate(json.loads(args_done.get("arguments")), SCHEMA)
        resp = done.get("response")
        assert resp["status"] == "completed" and [o["type"] for o in resp["output"]] == ["function_call"]
        assert resp["output"][0]["call_id"] == call_id
        assert not rt.audio_of(rid), "a call has no audio"

        # The client runs the function and asks for the answer.
        mark = rt.mark()
        await rt.send({"type": "conversation.item.create", "item": {
            "type": "function_call_output", "call_id": call_id,
            "output": json.dumps({"city": "Paris", "sky": "sunny", "temperature_c": 21})}})
        await rt.send({"type": "response.create", "response": {"tool_choice": "auto"}})
        created = await rt.wait_for("response.created", since=mark, timeout=TIMEOUT)
        rid2 = created.get("response")["id"]
        done2 = await rt.wait_for("response.done", since=mark, where=of(rid2), timeout=TIMEOUT)
        resp2 = done2.get("response")
        assert resp2["status"] == "completed", resp2
        [out] = resp2["output"]
        assert out["type"] == "message", out
        words = out["content"][0].get("transcript") or out["content"][0].get("text")
        assert words and words.strip(), out
        if modality == "audio":
            assert len(rt.audio_of(rid2)) >= RATE * 2 * 0.3
        assert not rt.log.all("error"), rt.log.all("error")
        print(f"{modality}: call {args_done.get('arguments')} -> answer {words!r}")
