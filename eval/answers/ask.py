"""Asking one question: retrieval straight from the RAG service (for
recall@k and the passages' text), then the answer through the gateway as a
typed question in a fresh session, timed on the client's clock, then scored.
Async and network-bound; the scoring itself is scoring.py."""
from __future__ import annotations

import dataclasses
import json
import time
from typing import Any, Awaitable, Callable

import grpc

from clients.realtime import RealtimeClient
from common.stubs import rag_pb2, rag_pb2_grpc
from eval.answers import scoring
from eval.answers.questions import Question

RECALL_K = (1, 3, 5)
ANSWER_TIMEOUT_S = 120.0


@dataclasses.dataclass
class Result:
    id: str
    question: str
    answerable: bool
    sources: list[str]
    retrieved: list[dict[str, Any]]      # top max(RECALL_K) passages: source, title, score
    hit_rank: int | None                 # 1-based rank of the first passage from a source
    used: list[dict[str, Any]]           # the passages the answer saw (response.done metadata)
    answer: str
    facts: list[bool]
    unknown: bool
    unsupported: list[list[str]]         # [kind, claim] found in no passage the answer saw
    novel_share: float
    ttft_ms: float | None                # response.create sent -> first text delta received
    total_ms: float | None               # response.create sent -> response.done received
    gateway_ms: dict[str, Any]           # the gateway's own timings (retrieval, LLM first token)
    status: str
    prompt_tokens: int = 0               # what the model read before its first token (load-independent)
    answer_tokens: int = 0

    @property
    def used_source_hit(self) -> bool:
        return any(p["source"] in self.sources for p in self.used)


async def retrieve(rag_address: str, query: str, k: int) -> list[Any]:
    async with grpc.aio.insecure_channel(rag_address) as ch:
        r = await rag_pb2_grpc.RetrieverStub(ch).Search(rag_pb2.SearchRequest(query=query, k=k), timeout=30)
        return list(r.passages)


# (address, query, k) -> passages with source, title, text and score, best first.
Searcher = Callable[[str, str, int], Awaitable[list[Any]]]


def first_hit(passages: list[Any], sources: tuple[str, ...]) -> int | None:
    return next((i for i, p in enumerate(passages, 1) if p.source in sources), None)


async def answer(ws_url: str, text: str) -> tuple[str, float | None, float | None, dict[str, Any]]:
    """(answer, ttft_ms, total_ms, response object of response.done)."""
    async with RealtimeClient(ws_url, keep_audio=False) as rt:
        await rt.request({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}},
            "conversation.item.added")
        since = rt.mark()
        t0 = time.monotonic()
        await rt.create_response(["text"])
        done = await rt.wait_for("response.done", timeout=ANSWER_TIMEOUT_S, since=since)
        deltas = rt.log.all("response.output_text.delta", since=since)
        text_out = "".join(e.get("delta", "") for e in deltas)
        ttft = (deltas[0].t - t0) * 1000 if deltas else None
        return text_out, ttft, (done.t - t0) * 1000, done.get("response") or {}


def _used(response: dict[str, Any]) -> list[dict[str, Any]]:
    raw = (response.get("metadata") or {}).get("sources")
    return json.loads(raw) if raw else []


async def ask(q: Question, ws_url: str, rag_address: str, search: Searcher = retrieve) -> Result:
    top = await search(rag_address, q.question, max(RECALL_K))
    text, ttft, total, resp = await answer(ws_url, q.question)
    used = _used(resp)
    # The passages' text, for the claim check: the gateway's own search returned
    # the same passages (same query, same index); the metadata names them.
    names = {(u["source"], u["title"]) for u in used}
    seen = [" ".join([p.title, p.text]) for p in top if (p.source, p.title) in names]
    timings = (resp.get("metadata") or {}).get("timings")
    usage = resp.get("usage") or {}
    return Result(
        id=q.id, question=q.question, answerable=q.answerable, sources=list(q.sources),
        retrieved=[{"source": p.source, "title": p.title, "score": round(p.score, 4)} for p in top],
        hit_rank=first_hit(top, q.sources), used=used, answer=text,
        facts=scoring.fact_hits(text, q.facts), unknown=scoring.says_unknown(text),
        unsupported=[list(c) for c in scoring.unsupported(text, seen, q.question)],
        novel_share=round(scoring.novel_share(text, seen, q.question), 3),
        ttft_ms=None if ttft is None else round(ttft, 1), total_ms=None if total is None else round(total, 1),
        gateway_ms=json.loads(timings) if timings else {}, status=str(resp.get("status", "")),
        prompt_tokens=int(usage.get("input_tokens") or 0), answer_tokens=int(usage.get("output_tokens") or 0))
