"""Request validation: every rejection says exactly which field is wrong and
what the allowed range is, so a caller can fix it without reading our code."""
from __future__ import annotations

import dataclasses

from services.llm.schema import ROLES, GenerateRequest, InvalidRequest, ResolvedSampling

MAX_SEED = 2**32 - 1   # llama.cpp seeds are uint32


@dataclasses.dataclass(frozen=True)
class Limits:
    default_max_tokens: int = 120
    max_tokens_limit: int = 4096
    temperature: float = 0.7
    # Answers from retrieved passages: greedy by default. Measured on the
    # answer eval (docs/answers.md): answers with a claim no passage holds
    # 49 % -> 28 %, all key facts stated 13 % -> 18 %, against 0.7.
    grounded_temperature: float = 0.0
    top_p: float = 0.9
    top_k: int = 40
    repeat_penalty: float = 1.1
    max_passages: int = 20


MAX_PASSAGE_QUERY_CHARS = 2000
MAX_CONVERSATION_CHARS = 128     # the conversation key (llm.proto): the gateway sends 16 hex digits


def check_messages(req: GenerateRequest, limits: Limits) -> None:
    if not req.messages:
        raise InvalidRequest("messages is empty: send at least one user message")
    for i, m in enumerate(req.messages):
        if m.role not in ROLES:
            raise InvalidRequest(
                f"messages[{i}].role {m.role!r} is not one of {', '.join(ROLES)}")
        if m.role == "user" and not m.content.strip():
            raise InvalidRequest(f"messages[{i}] is a user message with empty content")
    if not any(m.role in ("user", "tool") for m in req.messages):
        raise InvalidRequest("messages has no user (or tool) message to answer")
    if len(req.passages) > limits.max_passages:
        raise InvalidRequest(
            f"passages has {len(req.passages)} entries; at most {limits.max_passages} are allowed")
    if len(req.passage_query) > MAX_PASSAGE_QUERY_CHARS:
        raise InvalidRequest(f"passage_query has {len(req.passage_query)} characters; at most "
                             f"{MAX_PASSAGE_QUERY_CHARS} are allowed (it is a question's words)")
    if len(req.conversation) > MAX_CONVERSATION_CHARS:
        raise InvalidRequest(f"conversation has {len(req.conversation)} characters; at most "
                             f"{MAX_CONVERSATION_CHARS} are allowed (it is a key, not the conversation)")


def resolve_max_tokens(req: GenerateRequest, limits: Limits) -> int:
    if req.max_tokens == 0:
        return limits.default_max_tokens
    if not 1 <= req.max_tokens <= limits.max_tokens_limit:
        raise InvalidRequest(
            f"max_tokens {req.max_tokens} is out of range 1..{limits.max_tokens_limit} "
            f"(0 = server default {limits.default_max_tokens})")
    return req.max_tokens


def resolve_sampling(req: GenerateRequest, limits: Limits) -> ResolvedSampling:
    s = req.sampling

    def pick(name, value, default, lo, hi, lo_open=False):
        if value is None:
            return default
        if value != value or value < lo or value > hi or (lo_open and value == lo):  # NaN too
            bracket = "(" if lo_open else "["
            raise InvalidRequest(f"sampling.{name} {value} is out of range {bracket}{lo}, {hi}]")
        return value

    seed = s.seed
    if seed is not None and not 0 <= seed <= MAX_SEED:
        raise InvalidRequest(f"sampling.seed {seed} is out of range [0, {MAX_SEED}]")
    return ResolvedSampling(
        temperature=pick("temperature", s.temperature,
                         limits.grounded_temperature if req.passages else limits.temperature, 0.0, 2.0),
        top_p=pick("top_p", s.top_p, limits.top_p, 0.0, 1.0, lo_open=True),
        top_k=int(pick("top_k", s.top_k, limits.top_k, 0, 1000)),
        repeat_penalty=pick("repeat_penalty", s.repeat_penalty, limits.repeat_penalty, 0.0, 2.0,
                            lo_open=True),
        seed=seed,
    )


def check_context(prompt_tokens: int, n_ctx: int) -> None:
    # At least one token of room is needed to answer at all.
    if prompt_tokens >= n_ctx:
        raise InvalidRequest(
            f"prompt is {prompt_tokens} tokens but the context window is {n_ctx} tokens "
            f"(n_ctx): shorten the conversation or the passages")
