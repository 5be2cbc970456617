"""The answer eval's plumbing on scripted fakes (no model, no service process):
the gateway app served in this process, a typed question asked through the
Realtime protocol, the passages the gateway used read back from
response.done, the answer scored against them.

Invariants: the question reaches the LLM with the retrieved passages (the
gateway's own prompt path, not a copy); the eval reads the answer from the
text deltas, the passages the answer saw from the response's metadata, and
times the first token before the whole answer; an invented key combination
is reported against exactly those passages."""
from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from common.clock import MonotonicClock
from eval.answers import harness
from eval.answers.ask import ask
from eval.answers.questions import Question
from services.gateway.app import create_app
from services.gateway.backends.types import Passage
from services.gateway.fakes import FakeBackends, FakeProvider
from tests.procs import free_port

START = Passage("user-guide.md", "Starting the assistant", "Open a terminal and run make run.", 0.71)
OTHER = Passage("deployment.md", "Compose", "docker compose up -d --build", 0.42)
LOW = Passage("capacity.md", "Steps", "Users were stepped up.", 0.1)   # under the gateway's floor


@pytest.mark.timeout(60)
async def test_a_question_goes_through_the_gateway_and_is_scored_against_the_passages_it_saw():
    clock = MonotonicClock()
    made: list[FakeBackends] = []

    def make(_sid: str) -> FakeBackends:
        b = FakeBackends.create(clock, replies=["Run make run in a terminal, or press Ctrl+P."],
                                passages=[START, OTHER, LOW])
        made.append(b)
        return b

    async def search(address: str, query: str, k: int):
        assert address == "rag-here" and k >= 3
        return [SimpleNamespace(source=p.source, title=p.title, text=p.text, score=p.score)
                for p in (START, OTHER, LOW)]

    port = free_port()
    settings = harness.gateway_settings("127.0.0.1:1", "127.0.0.1:1", port)
    app = create_app(settings, backends=FakeProvider(make), clock=clock)
    q = Question("start", "How do I start the assistant?", ("user-guide.md",),
                 ((re.compile("make run", re.I),),))
    async with harness.serve(app, port) as url:
        r = await ask(q, url, "rag-here", search=search)

    asked = made[-1]
    assert [m.content for m in asked.llm.requests[-1] if m.role == "user"] == [q.question]
    assert [p.source for p in asked.llm.passages[-1]] == ["user-guide.md", "deployment.md"]
    assert r.status == "completed"
    assert r.answer == "Run make run in a terminal, or press Ctrl+P."
    assert [u["source"] for u in r.used] == ["user-guide.md", "deployment.md"]
    assert r.hit_rank == 1 and r.used_source_hit
    assert r.facts == [True] and not r.unknown
    assert r.unsupported == [["key", "Ctrl+P"]]
    assert r.ttft_ms is not None and r.total_ms is not None and 0 < r.ttft_ms <= r.total_ms
    assert "llm_first_token_ms" in r.gateway_ms


def test_the_gateway_runs_with_the_settings_the_product_resolves(monkeypatch):
    """GATEWAY_* variables apply as for `python -m services.gateway` (a prompt
    or retrieval setting is evaluated by setting it), on the given backends."""
    monkeypatch.setenv("GATEWAY_INSTRUCTIONS", "Answer like a pirate.")
    monkeypatch.setenv("GATEWAY_RAG_K", "2")
    s = harness.gateway_settings("127.0.0.1:1", "127.0.0.1:2", 8123)
    assert (s.instructions, s.rag_k) == ("Answer like a pirate.", 2)
    assert (s.llm_addrs, s.rag_addrs, s.port, s.redis_url) == ("127.0.0.1:1", "127.0.0.1:2", 8123, "")
