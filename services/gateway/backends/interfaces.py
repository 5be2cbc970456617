"""What the gateway needs from each speech service. The gRPC clients and the
scripted fakes both implement these, so turn-taking is tested without a port."""
from __future__ import annotations

from typing import AsyncIterator, Protocol, Sequence

from services.gateway.backends.types import (
    AsrParams, AsrResult, AudioPiece, ChatMessage, LlmUsage, Passage, Priority, ToolCall, Tools, VadEvent,
    VadParams,
)


class VadStream(Protocol):
    async def send(self, pcm16k: bytes) -> None:
        """Audio at 16 kHz; raises BackendError when the service is gone."""

    def events(self) -> AsyncIterator[VadEvent]:
        """Decisions as they are made; ends or raises BackendError when the stream dies."""

    async def close(self) -> None: ...


class AsrStream(Protocol):
    async def send(self, pcm16k: bytes) -> None: ...

    async def end_utterance(self, use_provisional: bool = False) -> None:
        """force_eou: transcribe what was sent since the last one and reset; with
        ``use_provisional`` the latest flush's result is the final."""

    async def flush(self) -> None:
        """Start the final pass on the utterance so far; it stays open (a
        provisional result comes back)."""

    def results(self) -> AsyncIterator[AsrResult]: ...

    async def close(self) -> None: ...


class VadClient(Protocol):
    name: str
    address: str

    async def ready(self) -> bool:
        """True when the service reports SERVING (checked before opening a stream)."""

    async def open(self, params: VadParams) -> VadStream: ...


class AsrClient(Protocol):
    name: str
    address: str

    async def ready(self) -> bool: ...

    async def open(self, params: AsrParams) -> AsrStream: ...


class LlmClient(Protocol):
    name: str
    address: str

    def generate(self, messages: Sequence[ChatMessage], passages: Sequence[Passage],
                 max_tokens: int, request_id: str, usage: LlmUsage,
                 priority: Priority = Priority.URGENT,
                 tools: Tools | None = None, passage_query: str = "",
                 conversation: str = "") -> AsyncIterator[str | ToolCall]:
        """Text deltas, or (with ``tools``) one ToolCall instead; fills
        ``usage`` at the end. Cancelling the iteration cancels the RPC.
        ``passage_query``: the words the quoted sentences are chosen by (the
        prefill's, so the prompts match: llm.proto); "" = the question's.
        ``conversation``: an opaque key of the session (types.conversation_key)."""

    async def prefill(self, messages: Sequence[ChatMessage], request_id: str,
                      passages: Sequence[Passage] = (), tools: Tools | None = None,
                      passage_query: str = "", conversation: str = "") -> str:
        """Warm a model instance with this history, whose last user message is
        still being spoken (nothing generated), and the passages retrieved for
        the words so far (quoted in that message, as the answer will have
        them, their sentences chosen by ``passage_query``); returns the finish reason. Always background: it never waits
        for an instance ("busy" instead)."""


class RagClient(Protocol):
    name: str
    address: str

    async def search(self, query: str, k: int, min_score: float) -> list[Passage]: ...


class TtsClient(Protocol):
    name: str
    address: str

    def synthesize(self, text: str, voice: str, speed: float,
                   priority: Priority = Priority.URGENT) -> AsyncIterator[AudioPiece]:
        """Audio of one clause as it is made. Cancelling the iteration cancels the RPC."""


class Backends(Protocol):
    """The engines one session uses for its whole life (routing decided at
    creation). Read-only members: a session never swaps an engine, and a
    read-only member may be a subtype (GrpcAsr, FakeAsr) in the implementation."""

    @property
    def vad(self) -> VadClient: ...
    @property
    def asr(self) -> AsrClient: ...
    @property
    def llm(self) -> LlmClient: ...
    @property
    def rag(self) -> RagClient: ...
    @property
    def tts(self) -> TtsClient: ...
    @property
    def variants(self) -> dict[str, str]:
        """service -> "stable" | "canary"."""
