"""Preemptive generation on a virtual clock.

Invariants: once a voice turn's final transcript is in while its silence
window is still open, the answer's pipeline (retrieval → LLM → TTS) starts at
once, but nothing of it reaches the client before the window closes; at the
close the turn is committed exactly as without preemption and the held
answer follows, its first audio sent at that instant when synthesis was
fast. The client sees the same events, in the same order, with the same
content, as without preemption, and the LLM the same history. Speech resuming
inside the window cancels the held run (its LLM/TTS calls are cancelled,
nothing of it is ever sent, no barge-in or cancelled turn is counted) and the
turn gives one answer built from the whole text. The session setting turns it
off. Times are virtual and exact."""
from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from prometheus_client import REGISTRY

from common.clock import VirtualClock
from services.gateway.fakes import FakeBackends
from services.gateway.scripted import ScriptedSession
from services.gateway.settings import GatewaySettings

QUESTION = "what is the weather like today"
SHORT = "Fine, thanks. It is sunny and warm all day."
LONG = ("The weather today is sunny and warm with a light breeze from the west. "
        "Later this afternoon some clouds will roll in, but no rain is expected, "
        "so it is a fine day for a walk.")
# The final comes from force_eou here (no flush at the VAD's pause): the flush,
# which only moves the final earlier, has its own tests (test_gateway_flush.py).
SETTINGS = dict(redis_url="", silence_duration_ms=500, vad_min_silence_ms=160, vad_min_speech_ms=120,
                prefix_padding_ms=300, min_interrupt_ms=300, false_interruption_timeout_ms=800,
                asr_flush_on_pause=False)
# Speech 0.5-2.5 s: the VAD reports the stop at 2.66 s (160 ms of silence), the
# final comes 0.1 s later (2.76 s), the window closes 500 ms after 2.5 s.
FINAL_AT, WINDOW_CLOSES = 2.76, 3.0
RESPONSE_EVENTS = ("response.", "output_audio_buffer.")


def session(speech, texts, replies=(SHORT,), **settings) -> ScriptedSession:
    clock = VirtualClock()
    b = FakeBackends.create(clock, speech=speech, texts=texts, replies=replies)
    b.llm.token_s = 0.02
    return ScriptedSession(b, clock, GatewaySettings(**(SETTINGS | settings)))


def metric(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, {"service": "unknown", "model": "unknown",
                                            "variant": "stable"} | labels) or 0.0


def approx(t: float) -> Any:
    return pytest.approx(t, abs=1e-6)


def client_view(s: ScriptedSession) -> list[Any]:
    """What a client can compare between two runs: every event with its ids
    numbered by first appearance, event ids and timings dropped, audio deltas
    merged into their byte count and transcript deltas into their text."""
    ids: dict[str, str] = {}

    def canon(v: Any, key: str = "") -> Any:
        if isinstance(v, dict):
            return {k: canon(x, k) for k, x in v.items() if k not in ("event_id", "timings", "trace_id")}
        if isinstance(v, list):
            return [canon(x) for x in v]
        if isinstance(v, str) and v.split("_")[0] in ("item", "resp", "conv"):
            return ids.setdefault(v, f"<{v.split('_')[0]}{len(ids)}>")
        return v

    out: list[Any] = []
    for e in s.events:
        ev = canon(e.event)
        if ev["type"] in ("response.output_audio.delta", "response.output_audio_transcript.delta"):
            key = ev["type"]
            part = len(base64.b64decode(ev.pop("delta"))) if key.endswith("audio.delta") else ev.pop("delta")
            if out and isinstance(out[-1], dict) and out[-1].get("merged") == key:
                out[-1]["value"] += part
                continue
            out.append({"merged": key, "value": part})
        else:
            out.append(ev)
    return out


async def test_answer_starts_at_the_final_and_is_released_when_the_window_closes():
    released = metric("voice_gateway_preemptive_runs_total", outcome="released")
    async with session([(0.5, 2.5)], [QUESTION]) as s:
        await s.run_audio(6.0)
        # The pipeline started as soon as the final was in, inside the window.
        # (The searches before it are the prefill's, for the words heard so far,
        # the last one maybe already all of them: test_gateway_prefill.)
        assert s.b.rag.queries[-1] == QUESTION
        assert s.b.llm.requested_at == [approx(FINAL_AT + s.b.rag.latency_s)]
        assert s.b.tts.requested_at[0] < WINDOW_CLOSES
        # Nothing of the answer reached the client before the window closed.
        early = [e for e in s.events if e.at < WINDOW_CLOSES - 1e-9]
        assert not [e for e in early if e.type.startswith(RESPONSE_EVENTS)
                    or e.type in ("input_audio_buffer.committed", "conversation.item.added")], early
        # At the close: the turn is committed, then the answer, its first audio at once.
        assert s.types()[:8] == [
            "input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
            "input_audio_buffer.committed", "conversation.item.added",
            "conversation.item.input_audio_transcription.completed", "conversation.item.done",
            "response.created", "response.output_item.added"]
        assert s.first("input_audio_buffer.speech_stopped").at == approx(WINDOW_CLOSES)
        assert s.first("response.created").at == approx(WINDOW_CLOSES)
        assert s.first("output_audio_buffer.started").at == approx(WINDOW_CLOSES)
        assert s.first("response.output_audio.delta").at == approx(WINDOW_CLOSES)
        done = s.first("response.done").event["response"]
        assert done["status"] == "completed"
        timings = json.loads(done["metadata"]["timings"])
        assert timings["voice_to_voice_ms"] == approx(timings["endpoint_ms"])
        assert timings["preempt_lead_ms"] == approx((WINDOW_CLOSES - FINAL_AT) * 1000)
        assert metric("voice_gateway_preemptive_runs_total", outcome="released") == released + 1


async def test_the_client_sees_the_same_events_with_and_without_preemption():
    views, requests = [], []
    for on in (True, False):
        async with session([(0.5, 2.5), (6.0, 7.0)], [QUESTION, "and tomorrow"],
                           replies=(SHORT, "Rain, I am afraid.")) as s:
            await s.send({"type": "session.update", "session": {"audio": {"input": {
                "turn_detection": {"type": "server_vad", "preemptive_generation": on}}}}})
            await s.run_audio(12.0)
            assert len(s.of("response.done")) == 2
            views.append([e for e in client_view(s) if e.get("type") != "session.updated"])
            requests.append(s.b.llm.requests)
            first_llm = s.b.llm.requested_at[0]
            assert (first_llm < WINDOW_CLOSES) == on
    assert views[0] == views[1]
    assert requests[0] == requests[1], "the LLM saw another history with preemption"


async def test_speech_inside_the_window_cancels_the_run_and_gives_one_answer():
    discarded = metric("voice_gateway_preemptive_runs_total", outcome="discarded")
    barge_ins = metric("voice_gateway_barge_ins_total")
    cancelled = metric("voice_gateway_turns_total", outcome="cancelled")
    # A pause of 300 ms: the first final (1.76 s) starts a run, the speech
    # that resumes at 1.8 s (reported at 1.92 s, inside the window) must drop it.
    async with session([(0.5, 1.5), (1.8, 2.6)], ["eight of spades", "four of clubs"],
                       replies=("Sure thing. " + LONG,)) as s:
        s.b.llm.first_token_s, s.b.llm.token_s = 0.05, 0.01   # "Sure thing." is synthesising at 1.92 s
        s.b.tts.rtf = 0.5
        await s.run_audio(2.0)
        assert s.b.tts.requested_at and s.b.tts.requested_at[0] < 1.92
        assert s.b.llm.requested_at == [approx(1.76 + s.b.rag.latency_s)]
        assert s.b.llm.cancelled == 1 and s.b.tts.cancelled == 1
        assert not [e for e in s.events if e.type.startswith(RESPONSE_EVENTS)]
        await s.run_audio(13.0)
        assert len(s.of("input_audio_buffer.speech_started")) == 1
        assert len(s.of("input_audio_buffer.committed")) == 1
        whole = "eight of spades four of clubs"
        assert [e.event["transcript"] for e in s.of("conversation.item.input_audio_transcription.completed")] \
            == [whole]
        # The second run answers the whole text and is the only one the client sees.
        assert len(s.b.llm.requests) == 2 and s.b.llm.requests[1][-1].content == whole
        assert len(s.of("response.created")) == 1
        assert {e.event["response_id"] for e in s.events if "response_id" in e.event} \
            == {s.first("response.created").event["response"]["id"]}
        assert s.first("response.done").event["response"]["status"] == "completed"
        assert s.first("response.created").at == approx(3.1)
        assert s.b.llm.requested_at[1] < 3.1, "the whole text was preempted too"
    assert metric("voice_gateway_preemptive_runs_total", outcome="discarded") == discarded + 1
    assert metric("voice_gateway_barge_ins_total") == barge_ins
    assert metric("voice_gateway_turns_total", outcome="cancelled") == cancelled


async def test_a_history_change_inside_the_window_replaces_the_run():
    replaced = metric("voice_gateway_preemptive_runs_total", outcome="replaced")
    async with session([(0.5, 2.5)], [QUESTION]) as s:
        await s.run_audio(2.9)
        assert len(s.b.llm.requests) == 1
        await s.send({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "I live in Oslo"}]}})
        await s.run_audio(4.0)
        assert len(s.b.llm.requests) == 2 and s.b.llm.cancelled == 1
        assert [m.content for m in s.b.llm.requests[1] if m.role == "user"] == ["I live in Oslo", QUESTION]
        assert len(s.of("response.created")) == 1
        assert s.first("response.done").event["response"]["status"] == "completed"
    assert metric("voice_gateway_preemptive_runs_total", outcome="replaced") == replaced + 1


async def test_a_run_that_failed_while_held_is_retried_at_the_end_of_the_turn():
    async with session([(0.5, 2.5)], [QUESTION]) as s:
        s.b.llm.kill()
        await s.run_audio(2.9)
        assert not s.of("error"), "a held failure reached the client early"
        s.b.llm.up = True
        await s.run_audio(4.0)
        assert not s.of("error")
        assert s.first("response.done").event["response"]["status"] == "completed"
        assert s.b.llm.requested_at == [approx(WINDOW_CLOSES + s.b.rag.latency_s)]


@pytest.mark.parametrize("how", ["session", "gateway default"])
async def test_preemption_can_be_turned_off(how):
    kw = {"preemptive_generation": False} if how == "gateway default" else {}
    async with session([(0.5, 2.5)], [QUESTION], **kw) as s:
        if how == "session":
            await s.send({"type": "session.update", "session": {"audio": {"input": {
                "turn_detection": {"type": "server_vad", "preemptive_generation": False}}}}})
        td = s.conv.state.config.turn_detection
        assert td.preemptive_generation is False and td.wire()["preemptive_generation"] is False
        await s.run_audio(4.5)
        assert s.b.llm.requested_at == [approx(WINDOW_CLOSES + s.b.rag.latency_s)]
        assert s.first("response.output_audio.delta").at > WINDOW_CLOSES + 0.1


async def test_manual_turns_are_not_preempted():
    async with session([], ["hello there assistant"]) as s:
        await s.send({"type": "session.update", "session": {"audio": {"input": {"turn_detection": None}}}})
        await s.run_audio(1.0)
        await s.send({"type": "input_audio_buffer.commit"})
        await s.wait(0.5)
        assert s.b.llm.requests == [] and not s.of("response.created")


async def test_an_interim_that_heard_it_all_starts_the_run_and_a_confirming_final_keeps_it():
    released = metric("voice_gateway_preemptive_runs_total", outcome="released")
    async with session([(0.5, 2.5)], [QUESTION]) as s:
        s.b.asr.every_chunk = True                    # interims up to the VAD stop (2.66 s)
        s.b.asr.finals = ["What is the weather like today?"]
        await s.run_audio(6.0)
        # Started at the VAD's stop, 0.1 s before the final; the final (same
        # words once case and punctuation are set aside) kept it.
        assert s.b.llm.requested_at == [approx(2.66 + s.b.rag.latency_s)]
        assert s.b.llm.cancelled == 0
        assert s.b.llm.requests[0][-1].content == QUESTION
        assert s.first("conversation.item.input_audio_transcription.completed").event["transcript"] \
            == "What is the weather like today?"
        assert s.first("response.created").at == approx(WINDOW_CLOSES)
        assert s.first("response.done").event["response"]["status"] == "completed"
        timings = json.loads(s.first("response.done").event["response"]["metadata"]["timings"])
        assert timings["interim_gap_ms"] == 0.0
    assert metric("voice_gateway_preemptive_runs_total", outcome="released") == released + 1


async def test_a_final_that_differs_from_the_interim_restarts_the_run():
    replaced = metric("voice_gateway_preemptive_runs_total", outcome="replaced")
    async with session([(0.5, 2.5)], [QUESTION], replies=("Fine, thanks. It is sunny and warm all day long.",)) as s:
        s.b.asr.every_chunk = True
        s.b.asr.finals = ["what is the weather like tonight"]
        await s.run_audio(6.0)
        assert s.b.llm.requested_at == [approx(2.66 + s.b.rag.latency_s), approx(FINAL_AT + s.b.rag.latency_s)]
        assert s.b.llm.cancelled == 1
        assert s.b.llm.requests[1][-1].content == "what is the weather like tonight"
        assert len(s.of("response.created")) == 1
        assert s.first("response.done").event["response"]["status"] == "completed"
    assert metric("voice_gateway_preemptive_runs_total", outcome="replaced") == replaced + 1


async def test_an_interim_short_of_the_speech_end_does_not_start_the_run():
    async with session([(0.5, 2.5)], [QUESTION]) as s:   # the last interim covers audio up to 1.7 s
        await s.run_audio(6.0)
        assert s.b.llm.requested_at == [approx(FINAL_AT + s.b.rag.latency_s)]
        timings = json.loads(s.first("response.done").event["response"]["metadata"]["timings"])
        assert timings["interim_gap_ms"] == approx(800.0)
