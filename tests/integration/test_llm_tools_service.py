"""Invariant: on the real LLM service (SmolLM2-135M GGUF via llama-cpp-python),
a forced tool call (required, or a named function) comes back as one
ToolCall event and done "tool_call", never as token deltas, and its
arguments parse as JSON and validate against the tool's JSON schema, for
every question and schema tried (the grammar, not the model, guarantees
it); with tool_choice auto the model either answers in words or makes such
a call; after a tool's result the model answers in words; a schema no
grammar can be built from is INVALID_ARGUMENT naming the field. Checks the
shape of calls, not the model's judgement of when to call."""
from __future__ import annotations

import json

import grpc
import jsonschema
import pytest

from common.stubs import llm_pb2, llm_pb2_grpc
from tests.procs import running

pytestmark = pytest.mark.slow

WEATHER = {"type": "object", "properties": {
    "city": {"type": "string", "maxLength": 40},
    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city", "unit"]}
ALARM = {"type": "object", "properties": {
    "hour": {"type": "integer"}, "minute": {"type": "integer"}, "label": {"type": "string", "maxLength": 30},
    "days": {"type": "array", "items": {"type": "string", "enum": ["mon", "tue", "wed", "thu", "fri"]},
             "maxItems": 5},
    "loud": {"type": "boolean"}}, "required": ["hour", "minute", "days", "loud"]}
TOOLS = [llm_pb2.Tool(name="get_weather", description="Current weather of a city.",
                      parameters_json=json.dumps(WEATHER)),
         llm_pb2.Tool(name="set_alarm", description="Set an alarm clock.", parameters_json=json.dumps(ALARM))]
SCHEMAS = {"get_weather": WEATHER, "set_alarm": ALARM}
QUESTIONS = ["What is the weather in Paris?", "Will it rain in Tokyo tomorrow, in fahrenheit?",
             "Wake me up at 7:30 on weekdays.", "Set a loud alarm for 6 am on Monday."]


@pytest.fixture(scope="module")
def llm():
    with running("services.llm", "LLM_", {"LLM_INSTANCES": "1", "LLM_QUEUE": "4"}) as svc:
        yield svc


def request(question: str, choice=llm_pb2.TOOL_CHOICE_REQUIRED, name: str = "",
            messages=()) -> llm_pb2.GenerateRequest:
    return llm_pb2.GenerateRequest(
        messages=list(messages) or [llm_pb2.ChatMessage(role="user", content=question)],
        tools=TOOLS, tool_choice=choice, tool_choice_name=name, max_tokens=60, request_id="it-tools")


async def generate(addr: str, req: llm_pb2.GenerateRequest):
    async with grpc.aio.insecure_channel(addr) as ch:
        deltas, calls, done = [], [], None
        async for r in llm_pb2_grpc.ChatStub(ch).Generate(req, timeout=120):
            assert done is None, "an event after done"
            which = r.WhichOneof("event")
            if which == "delta":
                deltas.append(r.delta.text)
            elif which == "tool_call":
                calls.append(r.tool_call)
            else:
                done = r.done
        return deltas, calls, done


def valid_call(call: llm_pb2.ToolCall) -> dict:
    assert call.name in SCHEMAS, call.name
    args = json.loads(call.arguments)
    jsonschema.validate(args, SCHEMAS[call.name])
    return args


@pytest.mark.parametrize("question", QUESTIONS)
async def test_a_required_call_parses_and_matches_its_schema(llm, question):
    deltas, calls, done = await generate(llm.address, request(question))
    assert deltas == [] and len(calls) == 1, (deltas, calls)
    valid_call(calls[0])
    assert done.finish_reason == "tool_call" and done.completion_tokens > 0


@pytest.mark.parametrize("name", ["get_weather", "set_alarm"])
async def test_a_named_function_is_the_one_called(llm, name):
    _, calls, done = await generate(llm.address, request("What is the weather in Rome?",
                                                         llm_pb2.TOOL_CHOICE_FUNCTION, name))
    assert [c.name for c in calls] == [name] and done.finish_reason == "tool_call"
    valid_call(calls[0])


@pytest.mark.parametrize("question", QUESTIONS[:2] + ["Tell me a joke about cats."])
async def test_auto_answers_in_words_or_makes_a_valid_call(llm, question):
    deltas, calls, done = await generate(llm.address, request(question, llm_pb2.TOOL_CHOICE_AUTO))
    if calls:
        assert deltas == [] and done.finish_reason == "tool_call"
        valid_call(calls[0])
    else:
        text = "".join(deltas)
        assert text.strip() and not text.lstrip().startswith("{"), text
        assert done.finish_reason in ("stop", "length")
    print(f"auto: {question!r} -> {'call ' + calls[0].arguments if calls else repr(''.join(deltas))}")


async def test_after_the_tools_result_the_answer_is_in_words(llm):
    msgs = [llm_pb2.ChatMessage(role="user", content="What is the weather in Paris?"),
            llm_pb2.ChatMessage(role="assistant", content='{"city": "Paris", "unit": "celsius"}',
                                name="get_weather", tool_call_id="call_1"),
            llm_pb2.ChatMessage(role="tool", content='{"sky": "sunny", "temperature_c": 21}',
                                name="get_weather", tool_call_id="call_1")]
    deltas, calls, done = await generate(llm.address, request("", llm_pb2.TOOL_CHOICE_AUTO, messages=msgs))
    text = "".join(deltas)
    assert calls == [] and text.strip() and done.finish_reason in ("stop", "length")
    print(f"answer from the tool's result: {text!r}")


async def test_a_schema_without_a_grammar_is_invalid_argument(llm):
    bad = llm_pb2.GenerateRequest(messages=[llm_pb2.ChatMessage(role="user", content="hi")],
                                  tools=[llm_pb2.Tool(name="f", parameters_json='{"type": "object", '
                                                      '"properties": {"a": {"type": "quux"}}}')],
                                  tool_choice=llm_pb2.TOOL_CHOICE_REQUIRED)
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await generate(llm.address, bad)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "tools[0].parameters_json" in exc.value.details()
