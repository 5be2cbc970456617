"""FakeLlm: streams the scripted reply word by word (a scripted ToolCall
reply comes out whole after ``call_s``, when the request offers tools; a
subclass scripts by the request's content through ``reply_to``); records every
request (and prefill) and when it came. FakeRag: the scripted passages above the
score floor, after ``latency_s``."""
from __future__ import annotations

import asyncio
from typing import AsyncIterator, Sequence

from services.gateway.backends.types import (
    BackendError, ChatMessage, LlmUsage, Passage, Priority, ToolCall, Tools,
)
from services.gateway.fakes.base import FakeBackend


class FakeLlm(FakeBackend):
    def __init__(self, clock, replies: Sequence[str | ToolCall] = ("Hello there.",), first_token_s: float = 0.1,
                 token_s: float = 0.01) -> None:
        super().__init__("llm", clock)
        self.replies = list(replies)
        self.first_token_s, self.token_s = first_token_s, token_s
        self.call_s = first_token_s              # until a scripted ToolCall comes
        self.requests: list[list[ChatMessage]] = []
        self.requested_at: list[float] = []
        self.passages: list[list[Passage]] = []
        self.prefills: list[list[ChatMessage]] = []
        self.prefill_ids: list[str] = []
        self.prefill_passages: list[list[Passage]] = []
        self.passage_queries: list[str] = []
        self.prefill_passage_queries: list[str] = []
        self.priorities: list[Priority] = []     # of generate calls, in order
        self.max_tokens: list[int] = []          # of generate calls, in order
        self.tools: list[Tools | None] = []      # of generate calls, in order
        self.prefill_tools: list[Tools | None] = []
        self.prefill_s = 0.02
        self.conversations: list[str] = []       # of generate and prefill calls, in order
        self.cancelled = self.completed = 0

    async def prefill(self, messages: Sequence[ChatMessage], request_id: str,
                      passages: Sequence[Passage] = (), tools: Tools | None = None,
                      passage_query: str = "", conversation: str = "") -> str:
        self._check()
        self.prefills.append(list(messages))
        self.conversations.append(conversation)
        self.prefill_passage_queries.append(passage_query)
        self.prefill_tools.append(tools)
        self.prefill_passages.append(list(passages))
        self.prefill_ids.append(request_id)
        await self.clock.sleep(self.prefill_s)
        return "prefill"

    def reply_to(self, messages: Sequence[ChatMessage], tools: Tools | None) -> str | ToolCall:
        """The next request's reply: the scripted replies in order, the last one repeated."""
        return self.replies[min(len(self.requests), len(self.replies) - 1)]

    async def generate(self, messages: Sequence[ChatMessage], passages: Sequence[Passage],
                       max_tokens: int, request_id: str, usage: LlmUsage,
                       priority: Priority = Priority.URGENT,
                       tools: Tools | None = None, passage_query: str = "",
                       conversation: str = "") -> AsyncIterator[str | ToolCall]:
        self._check()
        reply = self.reply_to(messages, tools)
        self.conversations.append(conversation)
        self.requests.append(list(messages))
        self.tools.append(tools)
        self.priorities.append(priority)
        self.max_tokens.append(max_tokens)
        self.requested_at.append(self.clock.now())
        self.passages.append(list(passages))
        self.passage_queries.append(passage_query)
        if isinstance(reply, ToolCall) and tools is None:
            reply = "I have no tools."   # a model offered no tools cannot call one
        if isinstance(reply, ToolCall):
            await self.clock.sleep(self.call_s)
            yield reply
            usage.completion_tokens, usage.finish_reason = 10, "tool_call"
            self.completed += 1
            return
        words = reply.split(" ")
        try:
            await self.clock.sleep(self.first_token_s)
            for i, w in enumerate(words):
                if i:
                    await self.clock.sleep(self.token_s)
                if not self.up:
                    raise BackendError(self.name, self.address, "unavailable: connection reset")
                yield w if i == 0 else " " + w
            usage.prompt_tokens = sum(len(m.content.split()) for m in messages)
            usage.completion_tokens, usage.finish_reason = len(words), "stop"
            self.completed += 1
        except (asyncio.CancelledError, GeneratorExit):
            self.cancelled += 1
            raise


class FakeRag(FakeBackend):
    def __init__(self, clock, passages: Sequence[Passage] = (), latency_s: float = 0.02) -> None:
        super().__init__("rag", clock)
        self.passages, self.latency_s = list(passages), latency_s
        self.queries: list[str] = []

    async def search(self, query: str, k: int, min_score: float) -> list[Passage]:
        self._check()
        self.queries.append(query)
        await self.clock.sleep(self.latency_s)
        return [p for p in self.passages if p.score >= min_score][:k]
