"""Invariant: every malformed Generate request is rejected with InvalidRequest
whose message names the wrong field and the allowed range (no messages,
unknown role, empty user content, max_tokens out of range, sampling out of
range, prompt longer than the context with both token counts), and valid
requests resolve to the server defaults."""
from __future__ import annotations

import pytest

from services.llm.engine import EngineConfig, LlmEngine
from services.llm.fake import ScriptedInstance, ScriptedTokenizer
from services.llm.schema import ChatMessage, GenerateRequest, InvalidRequest, Sampling
from services.llm.validate import Limits

USER = (ChatMessage("user", "hello there"),)


def engine(n_ctx: int = 2048) -> LlmEngine:
    return LlmEngine(ScriptedTokenizer(n_ctx), [ScriptedInstance(["hi"])],
                     EngineConfig(limits=Limits(default_max_tokens=120, max_tokens_limit=1024)))


@pytest.mark.parametrize("req, words", [
    (GenerateRequest(messages=()), ["messages", "empty"]),
    (GenerateRequest(messages=(ChatMessage("bot", "x"),)), ["messages[0].role", "'bot'", "user"]),
    (GenerateRequest(messages=(ChatMessage("system", "s"), ChatMessage("user", "  "))),
     ["messages[1]", "empty content"]),
    (GenerateRequest(messages=(ChatMessage("system", "only a system prompt"),)), ["no user"]),
    (GenerateRequest(messages=USER, max_tokens=-1), ["max_tokens -1", "1..1024"]),
    (GenerateRequest(messages=USER, max_tokens=5000), ["max_tokens 5000", "1..1024"]),
    (GenerateRequest(messages=USER, sampling=Sampling(temperature=3.0)), ["sampling.temperature 3.0"]),
    (GenerateRequest(messages=USER, sampling=Sampling(temperature=-0.1)), ["sampling.temperature"]),
    (GenerateRequest(messages=USER, sampling=Sampling(top_p=0.0)), ["sampling.top_p 0.0", "(0.0, 1.0]"]),
    (GenerateRequest(messages=USER, sampling=Sampling(top_p=1.5)), ["sampling.top_p"]),
    (GenerateRequest(messages=USER, sampling=Sampling(top_k=-3)), ["sampling.top_k -3"]),
    (GenerateRequest(messages=USER, sampling=Sampling(repeat_penalty=0.0)), ["sampling.repeat_penalty"]),
    (GenerateRequest(messages=USER, sampling=Sampling(temperature=float("nan"))), ["sampling.temperature"]),
    (GenerateRequest(messages=USER, sampling=Sampling(seed=-1)), ["sampling.seed -1"]),
    (GenerateRequest(messages=USER, passage_query="x" * 2001), ["passage_query has 2001", "at most 2000"]),
    (GenerateRequest(messages=USER, conversation="k" * 129), ["conversation has 129", "at most 128"]),
])
def test_malformed_requests_are_rejected_with_a_precise_message(req, words):
    with pytest.raises(InvalidRequest) as err:
        engine().prepare(req)
    for w in words:
        assert w in str(err.value), str(err.value)


def test_prompt_longer_than_context_reports_both_token_counts():
    eng = engine(n_ctx=16)
    long = GenerateRequest(messages=(ChatMessage("user", "word " * 40),))
    n_prompt = len(eng.tokenizer.encode_chat(
        [{"role": "system", "content": eng.config.system_prompt}, {"role": "user", "content": "word " * 40}]))
    with pytest.raises(InvalidRequest) as err:
        eng.prepare(long)
    msg = str(err.value)
    assert f"{n_prompt} tokens" in msg and "16 tokens" in msg and "n_ctx" in msg


def test_defaults_fill_unset_fields_and_explicit_values_win():
    eng = engine()
    p = eng.prepare(GenerateRequest(messages=USER))
    assert p.max_tokens == 120
    assert (p.sampling.temperature, p.sampling.top_p, p.sampling.top_k) == (0.7, 0.9, 40)
    q = eng.prepare(GenerateRequest(messages=USER, max_tokens=7,
                                    sampling=Sampling(temperature=0.0, top_k=0, seed=42)))
    assert q.max_tokens == 7 and q.sampling.temperature == 0.0 and q.sampling.top_k == 0
    assert q.sampling.seed == 42


def test_max_tokens_is_clipped_to_the_room_left_in_the_context():
    eng = engine(n_ctx=40)
    p = eng.prepare(GenerateRequest(messages=USER, max_tokens=500))
    assert p.max_tokens == 40 - len(p.prompt)


def test_answers_from_passages_are_greedy_by_default_and_a_request_may_say_otherwise():
    """LLM_GROUNDED_TEMPERATURE (0): an answer given retrieved passages is
    decoded greedily (fewer invented claims, docs/answers.md); small talk
    keeps the default temperature; an explicit temperature always wins."""
    from services.llm.schema import Passage

    eng = engine()
    passage = (Passage(source="docs/user-guide.md", title="Start", text="Run make run.", score=0.8),)
    assert eng.prepare(GenerateRequest(messages=USER, passages=passage)).sampling.temperature == 0.0
    assert eng.prepare(GenerateRequest(messages=USER)).sampling.temperature == 0.7
    asked = eng.prepare(GenerateRequest(messages=USER, passages=passage, sampling=Sampling(temperature=0.5)))
    assert asked.sampling.temperature == 0.5
