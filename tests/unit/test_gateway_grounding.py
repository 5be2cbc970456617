"""Invariant: a question the retrieved passages do not cover is answered "I
don't know" by the gateway, without running the LLM (grounding.py); a
covered question, a question with no passages (small talk, retrieval off),
a session offering tools, and the rule turned off (0) all reach the LLM
with the passages as before. The pure coverage figure is checked on words
of the answer eval's own outside and inside questions."""
from __future__ import annotations

import json

import pytest
from prometheus_client import REGISTRY

from common.clock import VirtualClock
from services.gateway import grounding
from services.gateway.backends.types import Passage
from services.gateway.fakes import FakeBackends
from services.gateway.scripted import ScriptedSession
from services.gateway.settings import GatewaySettings
from tests.unit.test_gateway_preempt import SETTINGS
from tests.unit.test_gateway_tools import WEATHER, ask

CLIENTS = Passage("user-guide.md", "Connecting clients",
                  "Any Realtime client connects to the WebSocket at /v1/realtime, for example the openai "
                  "package or the browser page.", 0.62)
START = Passage("user-guide.md", "Starting", "To start the assistant, run make run and open the page.", 0.71)
ANSWER = "Run make run."


def declined() -> float:
    return REGISTRY.get_sample_value("voice_gateway_answers_declined_total",
                                     {"service": "unknown", "model": "unknown", "variant": "stable"}) or 0.0


def test_coverage_is_the_share_of_the_questions_content_words_in_the_passages():
    assert grounding.coverage("How do I start the assistant?", [START]) == 1.0
    # "alexa" is nowhere in the passage; "connect" is (first five letters).
    assert grounding.coverage("Can I connect it to Alexa?", [CLIENTS]) == 0.5
    assert grounding.coverage("Is there an iPhone app?", [CLIENTS]) == 0.0
    assert grounding.coverage("How do I start?", []) is None          # nothing retrieved: no judgement
    assert grounding.coverage("How do I do it?", [START]) is None     # no content word to judge



def test_identifiers_in_the_documents_count_as_their_words():
    """The runbooks name alerts and metrics as identifiers; a spoken question
    names them in words (bench doc_questions' latency question was declined
    while its runbook was retrieved)."""
    runbook = Passage("runbooks/VoiceTurnLatencyErrorBudgetBurnFast.md", "VoiceTurnLatencyErrorBudgetBurnFast",
                      "Severity: page. Fires when: SLO voice_to_voice_latency burns its budget.", 0.5)
    assert grounding.coverage("What should I do when the latency alert fires?", [runbook]) == 2 / 3
    assert grounding.declines("What should I do when the latency alert fires?", [runbook], 0.5) is None
    assert grounding.coverage("Is there an iPhone app?", [runbook]) == 0.0

@pytest.mark.parametrize("question, below, expected", [
    ("Is there an iPhone app?", 0.5, 0.0),
    ("Can I connect it to Alexa?", 0.5, None),     # 0.5 is not under 0.5
    ("Can I connect it to Alexa?", 0.6, 0.5),
    ("How do I start the assistant?", 0.5, None),
    ("Is there an iPhone app?", 0.0, None),        # the rule off
])
def test_declines_under_the_threshold_only(question, below, expected):
    assert grounding.declines(question, [CLIENTS, START], below) == expected


def session(passages, **settings) -> ScriptedSession:
    clock = VirtualClock()
    b = FakeBackends.create(clock, passages=passages, replies=(ANSWER,))
    s = ScriptedSession(b, clock, GatewaySettings(**(SETTINGS | settings)))
    s.conv.state.config.retrieval_enabled = True
    return s


async def test_an_uncovered_question_is_declined_without_the_llm():
    before = declined()
    async with session([CLIENTS]) as s:
        await s.send({"type": "session.update", "session": {"output_modalities": ["text"]}})
        await ask(s, "Is there an iPhone app for it?")
        assert s.b.llm.requests == []                       # the model never ran
        done = s.first("response.done").event["response"]
        assert done["status"] == "completed"
        assert s.first("response.output_text.done").event["text"] == grounding.DECLINE
        assert s.conv.state.items[-1].role == "assistant"   # the decline is in the history
    assert declined() == before + 1


async def test_a_response_with_its_own_instructions_is_never_declined():
    """After an uncovered question, response.create telling the model what to
    say (instructions) is not an answer to that question: it reaches the LLM."""
    async with session([CLIENTS]) as s:
        await s.send({"type": "session.update", "session": {"output_modalities": ["text"]}})
        await ask(s, "Is there an iPhone app for it?")
        assert s.b.llm.requests == []
        before = declined()
        await s.send({"type": "response.create", "response": {
            "conversation": "none", "instructions": "Say goodbye to the user."}})
        await s.wait(1.0)
        assert len(s.b.llm.requests) == 1
        assert s.of("response.output_text.done")[-1].event["text"] == ANSWER
    assert declined() == before


async def test_a_decline_has_no_llm_timing():
    async with session([CLIENTS]) as s:
        await s.send({"type": "session.update", "session": {"output_modalities": ["text"]}})
        await ask(s, "Is there an iPhone app for it?")
        timings = json.loads(s.first("response.done").event["response"]["metadata"]["timings"])
        assert "retrieval_ms" in timings and "llm_first_token_ms" not in timings, timings


async def test_a_spoken_decline_is_spoken():
    async with session([CLIENTS]) as s:
        await ask(s, "Is there an iPhone app for it?")
        await s.wait(5.0)      # spoken to its end
        assert s.b.llm.requests == []
        assert s.of("response.output_audio.delta")
        assert s.first("response.output_audio_transcript.done").event["transcript"] == grounding.DECLINE


@pytest.mark.parametrize("passages, settings, tools", [
    ([START], {}, False),                           # covered
    ([], {}, False),                                # nothing retrieved (small talk)
    ([CLIENTS], {"rag_decline_below": 0.0}, False),  # the rule off
    ([CLIENTS], {}, True),                          # tools offered: maybe a tool's question
])
async def test_everything_else_reaches_the_llm_with_its_passages(passages, settings, tools):
    async with session(passages, **settings) as s:
        update = {"output_modalities": ["text"], **({"tools": [WEATHER]} if tools else {})}
        await s.send({"type": "session.update", "session": update})
        question = "How do I start the assistant?" if passages == [START] else "Is there an iPhone app for it?"
        await ask(s, question)
        assert len(s.b.llm.requests) == 1
        assert s.b.llm.passages[0] == passages
        assert s.first("response.output_text.done").event["text"] == ANSWER


@pytest.mark.parametrize("name, value", [("rag_decline_below", 1.5), ("rag_decline_below", -0.1),
                                         ("rag_decline_below", float("nan")), ("rag_min_score", 2.0),
                                         ("rag_min_score", -1.5)])
def test_a_share_setting_outside_0_to_1_stops_the_start_and_names_the_variable(name, value):
    from services.gateway.app import create_app
    from services.gateway.fakes import FakeProvider

    with pytest.raises(ValueError, match=f"GATEWAY_{name.upper()}"):
        create_app(GatewaySettings(redis_url="", web_dir="/nonexistent", **{name: value}),
                   backends=FakeProvider(lambda: None))
