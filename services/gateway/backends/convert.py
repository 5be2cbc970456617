"""Protobuf ↔ the gateway's dataclasses: the only module of the gateway besides
grpc_clients.py that touches *_pb2."""
from __future__ import annotations

from typing import Sequence

from common.stubs import asr_pb2, common_pb2, llm_pb2, rag_pb2, tts_pb2, vad_pb2
from services.gateway.backends.types import (
    AsrParams, AsrResult, AudioPiece, ChatMessage, LlmUsage, Passage, Priority, ToolCall, Tools, VadEvent,
    VadParams,
)

_PRIORITY = {Priority.URGENT: common_pb2.PRIORITY_URGENT, Priority.BACKGROUND: common_pb2.PRIORITY_BACKGROUND}


def priority(p: Priority) -> common_pb2.Priority:
    """Always explicit on the wire (never UNSPECIFIED): the gateway decided."""
    return _PRIORITY[p]


def vad_config(p: VadParams, progress_ms: int = 0) -> vad_pb2.DetectRequest:
    return vad_pb2.DetectRequest(config=vad_pb2.VadConfig(
        threshold=p.threshold, min_speech_ms=p.min_speech_ms, min_silence_ms=p.min_silence_ms,
        prefix_padding_ms=p.prefix_padding_ms, sample_rate_hz=16000, pause_events=p.pause_events,
        end_of_turn=p.end_of_turn, progress_ms=progress_ms))


def vad_audio(pcm: bytes) -> vad_pb2.DetectRequest:
    return vad_pb2.DetectRequest(audio=pcm)


def vad_event(resp: vad_pb2.DetectResponse) -> VadEvent | None:
    which = resp.WhichOneof("event")
    if which == "speech_started":
        st = resp.speech_started
        return VadEvent("started", int(st.audio_ms), int(st.padded_start_ms), int(st.decided_at_ms))
    if which == "speech_paused":
        pa = resp.speech_paused
        return VadEvent("paused", int(pa.audio_ms), 0, int(pa.decided_at_ms))
    if which == "speech_stopped":
        sp = resp.speech_stopped
        prob = sp.turn_complete_probability if sp.HasField("turn_complete_probability") else None
        return VadEvent("stopped", int(sp.audio_ms), 0, int(sp.decided_at_ms), prob)
    return None


def asr_config(p: AsrParams) -> asr_pb2.RecognizeRequest:
    return asr_pb2.RecognizeRequest(config=asr_pb2.RecognitionConfig(
        language=p.language, interim_results=True, sample_rate_hz=16000,
        interim_interval_ms=p.interim_interval_ms, beam_size=p.beam_size, omit_words=p.omit_words))


def asr_audio(pcm: bytes) -> asr_pb2.RecognizeRequest:
    return asr_pb2.RecognizeRequest(audio=pcm)


def _trace(carrier: dict[str, str]) -> common_pb2.TraceContext:
    return common_pb2.TraceContext(traceparent=carrier.get("traceparent", ""),
                                   tracestate=carrier.get("tracestate", ""))


def vad_trace(carrier: dict[str, str]) -> vad_pb2.DetectRequest:
    return vad_pb2.DetectRequest(trace=_trace(carrier))


def asr_trace(carrier: dict[str, str]) -> asr_pb2.RecognizeRequest:
    return asr_pb2.RecognizeRequest(trace=_trace(carrier))


def asr_eou(use_provisional: bool = False) -> asr_pb2.RecognizeRequest:
    return asr_pb2.RecognizeRequest(control=asr_pb2.Control(force_eou=True, use_provisional=use_provisional))


def asr_flush() -> asr_pb2.RecognizeRequest:
    return asr_pb2.RecognizeRequest(control=asr_pb2.Control(flush=True))


def asr_result(resp: asr_pb2.RecognizeResponse) -> AsrResult:
    return AsrResult(resp.text, resp.is_final, int(resp.utterance_index), int(resp.audio_processed_ms),
                     resp.provisional)


_CHOICE = {"auto": llm_pb2.TOOL_CHOICE_AUTO, "required": llm_pb2.TOOL_CHOICE_REQUIRED,
           "function": llm_pb2.TOOL_CHOICE_FUNCTION}


def generate_request(messages: Sequence[ChatMessage], passages: Sequence[Passage],
                     max_tokens: int, request_id: str, prefill: bool = False,
                     prio: Priority = Priority.URGENT, tools: Tools | None = None,
                     passage_query: str = "", conversation: str = "") -> llm_pb2.GenerateRequest:
    req = llm_pb2.GenerateRequest(
        messages=[llm_pb2.ChatMessage(role=m.role, content=m.content, name=m.name, tool_call_id=m.tool_call_id)
                  for m in messages],
        passages=[common_pb2.Passage(source=p.source, title=p.title, text=p.text, score=p.score)
                  for p in passages],
        max_tokens=max_tokens, request_id=request_id, prefill=prefill, priority=priority(prio),
        passage_query=passage_query, conversation=conversation)
    if tools is not None:
        req.tools.extend(llm_pb2.Tool(name=t.name, description=t.description, parameters_json=t.parameters_json)
                         for t in tools.specs)
        req.tool_choice = _CHOICE[tools.choice]
        req.tool_choice_name = tools.name
    return req


def prefill_request(messages: Sequence[ChatMessage], request_id: str,
                    passages: Sequence[Passage] = (), tools: Tools | None = None,
                    passage_query: str = "", conversation: str = "") -> llm_pb2.GenerateRequest:
    """Prefill only saves the answer time later: background, so it never
    delays (or waits for) an answer someone is listening for. The tools
    are described in the system prompt: sent, so the prompts match."""
    return generate_request(messages, passages, 0, request_id, prefill=True, prio=Priority.BACKGROUND,
                            tools=tools, passage_query=passage_query, conversation=conversation)


def generate_event(resp: llm_pb2.GenerateResponse, usage: LlmUsage) -> str | ToolCall | None:
    """The delta text, the model's tool call, or None for the final message
    (which fills ``usage``)."""
    if resp.WhichOneof("event") == "delta":
        return resp.delta.text
    if resp.WhichOneof("event") == "tool_call":
        return ToolCall(resp.tool_call.name, resp.tool_call.arguments)
    if resp.WhichOneof("event") == "done":
        usage.prompt_tokens = resp.done.prompt_tokens
        usage.completion_tokens = resp.done.completion_tokens
        usage.finish_reason = resp.done.finish_reason
        usage.cached_prompt_tokens = resp.done.cached_prompt_tokens
    return None


def search_request(query: str, k: int, min_score: float) -> rag_pb2.SearchRequest:
    return rag_pb2.SearchRequest(query=query, k=k, min_score=min_score)


def passages(resp: rag_pb2.SearchResponse) -> list[Passage]:
    return [Passage(p.source, p.title, p.text, p.score) for p in resp.passages]


def synthesize_request(text: str, voice: str, speed: float,
                       prio: Priority = Priority.URGENT) -> tts_pb2.SynthesizeRequest:
    return tts_pb2.SynthesizeRequest(text=text, voice=voice, speaking_rate=speed, priority=priority(prio))


def audio_piece(chunk: tts_pb2.AudioChunk) -> AudioPiece:
    return AudioPiece(chunk.audio, chunk.sample_rate_hz or 22050)


def status_request() -> common_pb2.StatusRequest:
    return common_pb2.StatusRequest()
