"""Protobuf <-> engine types for the LLM service: the only module besides
the servicer and __main__ that touches llm_pb2."""
from __future__ import annotations

from common.stubs import common_pb2, llm_pb2
from services.llm.schema import (
    ChatMessage, Event, GenerateDone, GenerateRequest, InvalidRequest, Passage, Priority, Sampling, TokenDelta,
    Tool, ToolCall, ToolChoice,
)


def _opt(msg, field: str):
    return getattr(msg, field) if msg.HasField(field) else None


def priority_from_pb(p: int) -> Priority:
    """Only an explicit BACKGROUND is background: unspecified (older clients)
    and values from a newer proto keep the latency they always had."""
    return Priority.BACKGROUND if p == common_pb2.PRIORITY_BACKGROUND else Priority.URGENT


def request_from_pb(req: llm_pb2.GenerateRequest) -> GenerateRequest:
    s = req.sampling
    return GenerateRequest(
        messages=tuple(ChatMessage(role=m.role, content=m.content, name=m.name,
                                   tool_call_id=m.tool_call_id) for m in req.messages),
        passages=tuple(Passage(source=p.source, title=p.title, text=p.text, score=p.score)
                       for p in req.passages),
        sampling=Sampling(temperature=_opt(s, "temperature"), top_p=_opt(s, "top_p"),
                          top_k=_opt(s, "top_k"), repeat_penalty=_opt(s, "repeat_penalty"),
                          seed=_opt(s, "seed")),
        max_tokens=req.max_tokens,
        request_id=req.request_id,
        prefill=req.prefill,
        priority=priority_from_pb(req.priority),
        tools=tuple(Tool(name=t.name, description=t.description, parameters_json=t.parameters_json)
                    for t in req.tools),
        tool_choice=tool_choice_from_pb(req.tool_choice),
        tool_choice_name=req.tool_choice_name,
        passage_query=req.passage_query,
        conversation=req.conversation,
    )


def tool_choice_from_pb(c: int) -> ToolChoice:
    """A value from a newer proto is refused, not guessed (validate.py says which)."""
    try:
        return ToolChoice(c)
    except ValueError:
        raise InvalidRequest(f"tool_choice {c} is not one of AUTO, NONE, REQUIRED, FUNCTION") from None


def event_to_pb(ev: Event) -> llm_pb2.GenerateResponse:
    if isinstance(ev, TokenDelta):
        return llm_pb2.GenerateResponse(delta=llm_pb2.TokenDelta(text=ev.text, index=ev.index))
    if isinstance(ev, ToolCall):
        return llm_pb2.GenerateResponse(tool_call=llm_pb2.ToolCall(name=ev.name, arguments=ev.arguments))
    if isinstance(ev, GenerateDone):
        return llm_pb2.GenerateResponse(done=llm_pb2.GenerateDone(
            finish_reason=ev.finish_reason, prompt_tokens=ev.prompt_tokens,
            completion_tokens=ev.completion_tokens,
            time_to_first_token_ms=ev.time_to_first_token_ms,
            tokens_per_second=ev.tokens_per_second, cached_prompt_tokens=ev.cached_prompt_tokens))
    raise TypeError(f"not an LLM event: {ev!r}")
