"""Where a response's words come from: retrieval first (when on), then the
LLM's token stream, or the gateway's own decline when the passages found
cannot answer the question (grounding.py): then the model is not run."""
from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, Any, AsyncIterator

from common.tracing import tracer
from services.gateway import grounding, metrics
from services.gateway.backends.types import BackendError, Priority, ToolCall, conversation_key

if TYPE_CHECKING:
    from services.gateway.response import Response

log = logging.getLogger(__name__)


async def retrieve(resp: "Response") -> None:
    """The passages for the response's question (``resp.passages``), timed."""
    if not (resp.retrieval and resp.query.strip()):
        return
    conv = resp.conv
    t0 = resp.clock.now()
    with tracer("gateway").start_as_current_span("retrieval"):
        try:
            hits = await conv.backends.rag.search(resp.query, resp.k, conv.settings.rag_min_score)
            resp.passages = [p for p in hits if p.score >= conv.settings.rag_min_score]
        except BackendError as exc:
            # Retrieval is an aid: answer without it, but say so.
            resp.hold.do(functools.partial(conv.backend_error, exc))
    resp.timings.retrieval_s = resp.clock.now() - t0


def words(resp: "Response") -> AsyncIterator[str | ToolCall]:
    """The response's text deltas (or a tool call): the LLM's, or the decline."""
    below = resp.conv.settings.rag_decline_below
    # What the turn's prefill quoted, where the final agrees (planning.py): its evaluation is reused.
    resp.passages, query = resp.conv.planner.quote(resp.answers_item, resp.query, resp.passages)
    # With tools offered the question may be a tool's to answer, not the documents'.
    if (resp.may_decline and resp.tools is None
            and (cover := grounding.declines(resp.query, resp.passages, below)) is not None):
        resp.declined = True
        n = len(resp.passages)
        # Counted and logged once it is given (a preemptive run dropped unheard, or a
        # cancelled one, is not); no words of the question at INFO (docs/security.md).
        resp.on_completed.append(lambda r: _declined(r, n, cover, below))
        return _say(grounding.DECLINE)
    # Urgent: someone waits for the answer (its tail is decoded at a lower CPU
    # priority by the LLM service itself).
    kw: dict[str, Any] = {"tools": resp.tools} if resp.tools is not None else {}
    if query:
        kw["passage_query"] = query
    return resp.conv.backends.llm.generate(
        resp.messages, resp.passages, resp.max_tokens, resp.id, resp.usage, Priority.URGENT,
        conversation=conversation_key(resp.conv.state.id), **kw)


def _declined(resp: "Response", n: int, cover: float, below: float) -> None:
    log.info("response %s: the %d passages cover %.2f of the question's words (under %.2f): "
             "declined without the LLM", resp.id, n, cover, below)
    metrics.ANSWERS_DECLINED.labels(**metrics.base()).inc()


async def _say(text: str) -> AsyncIterator[str | ToolCall]:
    yield text
