"""The LLM answer probe (``quality:llm_answers``), paired per question: a
fixed subset of the answer eval's questions (eval/answers/questions.toml,
each with the key facts a correct answer states), each asked of the stable
and of the canary LLM with the *same* passages (retrieved once, from the
stable RAG service), greedily decoded, and scored with the answer eval's own
rules (eval/answers/scoring.py): key facts stated, and specific claims
(commands, settings, numbers, names) that no passage holds.

A new model, prompt or setting that reads the passages worse states fewer
key facts; one that invents more makes more unsupported claims. Both are
counted over the same questions on both sides, so what the questions cost
cancels out.

Verdict (``llm_check``, pure):
- FAIL when the canary states more than ``fact_margin`` key facts fewer
  than stable (summed over the questions), or makes unsupported claims in
  more than ``claim_margin`` answers more than stable (the value over the
  limit fails, as the judge's other rules); the detail says which tripped;
- PASS otherwise, with both sides' counts in the detail;
- INCONCLUSIVE when a side could not answer enough questions (no address,
  the LLM busy or down, no RAG: the passages are the probe's input), never a
  pass by default.

Requests are BACKGROUND (the LLM never lets them wait ahead of, or for, a
live answer; a busy LLM answers RESOURCE_EXHAUSTED, retried a few times,
then the question is skipped). Greedy decoding: an unchanged model gives
the same answers on both sides, so a canary identical to stable passes."""
from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING, Any, Sequence

import grpc

from release.judge import FAIL, INCONCLUSIVE, PASS, Check

if TYPE_CHECKING:
    from eval.answers.questions import Question

LLM_RULE = "quality:llm_answers"
QUESTIONS = 12          # the first answerable questions of the eval, in file order
MAX_TOKENS = 96         # a spoken answer is one or two sentences
BUSY_RETRIES = 5
BUSY_WAIT_S = 1.0
MIN_ANSWERED = 8        # questions both sides answered, before a verdict


@dataclasses.dataclass(frozen=True)
class Answer:
    question: str
    text: str
    facts: int           # key facts stated
    of: int              # key facts asked for
    unsupported: int     # specific claims in no passage (and not in the question)


@dataclasses.dataclass
class Side:
    answers: dict[str, Answer]     # question id -> answer
    why: str = ""                  # why questions are missing (the first error)


def llm_check(canary: Side, stable: Side, fact_margin: int = 1, claim_margin: int = 1) -> Check:
    both = sorted(set(canary.answers) & set(stable.answers))
    if len(both) < MIN_ANSWERED:
        why = canary.why or stable.why or "too few questions answered"
        return Check(LLM_RULE, INCONCLUSIVE, detail={"why": why, "answered_by_both": len(both)})
    c = [canary.answers[q] for q in both]
    s = [stable.answers[q] for q in both]
    facts_c, facts_s = sum(a.facts for a in c), sum(a.facts for a in s)
    claims_c, claims_s = sum(a.unsupported > 0 for a in c), sum(a.unsupported > 0 for a in s)
    worse = [q for q in both if canary.answers[q].facts < stable.answers[q].facts]
    detail: dict[str, Any] = {
        "questions": len(both), "facts_asked": sum(a.of for a in s),
        "facts_canary": facts_c, "facts_stable": facts_s,
        "answers_with_unsupported_claims_canary": claims_c,
        "answers_with_unsupported_claims_stable": claims_s,
        "fact_margin": fact_margin, "claim_margin": claim_margin,
        "canary_missed_facts_in": worse[:5]}
    lost = facts_s - facts_c
    if lost > fact_margin:
        return Check(LLM_RULE, FAIL, float(lost), float(fact_margin), detail | {"tripped": "key facts fewer"})
    if claims_c - claims_s > claim_margin:
        return Check(LLM_RULE, FAIL, float(claims_c - claims_s), float(claim_margin),
                     detail | {"tripped": "more answers with unsupported claims"})
    return Check(LLM_RULE, PASS, float(lost), float(fact_margin), detail)


def questions(n: int = QUESTIONS) -> "list[Question]":
    from eval.answers.questions import load

    return [q for q in load() if q.answerable][:n]


async def passages_for(rag_address: str, qs: "Sequence[Question]", k: int = 3,
                       min_score: float = 0.3) -> dict[str, list[Any]] | str:
    """The passages each question is asked with (the gateway's k and floor),
    or why there are none: without them the probe has no input."""
    from eval.answers.ask import retrieve

    if not rag_address:
        return "no RAG address: the probe's passages come from it"
    out: dict[str, list[Any]] = {}
    try:
        for q in qs:
            out[q.id] = [p for p in await retrieve(rag_address, q.question, k) if p.score >= min_score]
    except grpc.aio.AioRpcError as exc:
        return f"RAG {rag_address}: {exc.code().name}"
    return out


async def answers(llm_address: str, qs: "Sequence[Question]", passages: dict[str, list[Any]]) -> Side:
    """Each question's answer from the LLM at ``llm_address``, scored."""
    from eval.answers.scoring import fact_hits, unsupported

    if not llm_address:
        return Side({}, "no LLM address to probe")
    side = Side({})
    async with grpc.aio.insecure_channel(llm_address) as ch:
        for q in qs:
            found = passages.get(q.id, [])
            try:
                text = await _generate(ch, q.question, found)
            except grpc.aio.AioRpcError as exc:
                side.why = side.why or f"LLM {llm_address}: {exc.code().name}"
                if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    break       # down: the other questions would wait for the same
                continue
            hits = fact_hits(text, q.facts)
            side.answers[q.id] = Answer(q.question, text, sum(hits), len(hits),
                                        len(unsupported(text, [p.text for p in found], q.question)))
    return side


async def _generate(ch: grpc.aio.Channel, question: str, passages: list[Any]) -> str:
    from common.stubs import common_pb2, llm_pb2, llm_pb2_grpc

    req = llm_pb2.GenerateRequest(
        messages=[llm_pb2.ChatMessage(role="user", content=question)],
        passages=[common_pb2.Passage(source=p.source, title=p.title, text=p.text, score=p.score)
                  for p in passages],
        sampling=llm_pb2.SamplingParams(temperature=0.0, seed=0), max_tokens=MAX_TOKENS,
        request_id="release-probe", priority=common_pb2.PRIORITY_BACKGROUND)
    for attempt in range(BUSY_RETRIES + 1):
        try:
            parts = []
            async for ev in llm_pb2_grpc.ChatStub(ch).Generate(req, timeout=60):
                if ev.HasField("delta"):
                    parts.append(ev.delta.text)
            return "".join(parts)
        except grpc.aio.AioRpcError as exc:
            if exc.code() is not grpc.StatusCode.RESOURCE_EXHAUSTED or attempt == BUSY_RETRIES:
                raise
            await asyncio.sleep(BUSY_WAIT_S)     # live answers first: try again in a moment
    raise AssertionError("unreachable")


async def probe(llm_stable: str, llm_canary: str, rag: str, n: int = QUESTIONS,
                fact_margin: int = 1, claim_margin: int = 1, *, k: int = 3, min_score: float = 0.3) -> Check:
    """The check; any failure to run it is inconclusive (the step holds), never an error.
    ``k``, ``min_score``: the gateway's retrieval settings (GATEWAY_RAG_K, GATEWAY_RAG_MIN_SCORE)."""
    try:
        qs = questions(n)
        found = await passages_for(rag, qs, k, min_score)
        if isinstance(found, str):
            return Check(LLM_RULE, INCONCLUSIVE, detail={"why": found})
        stable = await answers(llm_stable, qs, found)
        canary = await answers(llm_canary, qs, found)
    except Exception as exc:  # noqa: BLE001 - a probe that cannot run holds the step
        return Check(LLM_RULE, INCONCLUSIVE, detail={"why": f"the LLM probe could not run: {exc!r}"})
    return llm_check(canary, stable, fact_margin, claim_margin)
