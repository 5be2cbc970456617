"""The LLM engine's own request and event types. The wire (protobuf) types are
converted to and from these in convert.py, so the engine never sees protobuf."""
from __future__ import annotations

import dataclasses
import enum
from typing import Optional, Union

ROLES = ("system", "user", "assistant", "tool")


@dataclasses.dataclass(frozen=True)
class ChatMessage:
    role: str
    content: str
    name: str = ""           # optional speaker or tool name
    tool_call_id: str = ""   # for role "tool"


@dataclasses.dataclass(frozen=True)
class Passage:
    """A retrieved piece of a local document, used as grounding."""
    source: str
    title: str
    text: str
    score: float = 0.0


@dataclasses.dataclass(frozen=True)
class Sampling:
    """Sampling overrides; ``None`` means "use the server default"."""
    temperature: Optional[float] = None
    top_p: Optional[float] = None
    top_k: Optional[int] = None
    repeat_penalty: Optional[float] = None
    seed: Optional[int] = None


class Priority(enum.IntEnum):
    """How urgently the caller needs the answer (lower = served first)."""

    URGENT = 0       # a person is waiting for this answer now
    BACKGROUND = 1   # prefill, or work nobody waits on: never queues for an instance

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclasses.dataclass(frozen=True)
class Tool:
    """A function the model may call; its arguments are decoded under a
    grammar built from ``parameters_json`` (tools.py)."""
    name: str
    description: str = ""
    parameters_json: str = ""   # JSON schema of the arguments object; "" = no arguments


class ToolChoice(enum.IntEnum):
    AUTO = 0       # the model answers or calls (tools.py says how it decides)
    NONE = 1       # the tools are not offered
    REQUIRED = 2   # one of the tools is called
    FUNCTION = 3   # the named tool is called


@dataclasses.dataclass(frozen=True)
class GenerateRequest:
    messages: tuple[ChatMessage, ...]
    passages: tuple[Passage, ...] = ()
    sampling: Sampling = Sampling()
    max_tokens: int = 0      # 0 = server default
    request_id: str = ""
    prefill: bool = False    # only warm an instance's cache with the prompt so far (see llm.proto)
    priority: Priority = Priority.URGENT
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice = ToolChoice.AUTO
    tool_choice_name: str = ""   # ToolChoice.FUNCTION: which tool
    passage_query: str = ""      # the words the quoted sentences are chosen by ("" = the question)
    conversation: str = ""       # opaque key of the conversation (llm.proto); "" = unknown

    @property
    def background(self) -> bool:
        """Prefill is background whatever the caller said: it only saves later work."""
        return self.prefill or self.priority is Priority.BACKGROUND


@dataclasses.dataclass(frozen=True)
class ResolvedSampling:
    """Sampling with every default filled in: what the model actually runs with."""
    temperature: float
    top_p: float
    top_k: int
    repeat_penalty: float
    seed: Optional[int]


@dataclasses.dataclass(frozen=True)
class TokenDelta:
    text: str
    index: int               # token index within the completion


@dataclasses.dataclass(frozen=True)
class ToolCall:
    """The model's call: ``arguments`` is JSON valid against the tool's schema."""
    name: str
    arguments: str


@dataclasses.dataclass(frozen=True)
class GenerateDone:
    # "stop" | "length" | "cancelled" | "tool_call" | "prefill" | "busy" (prefill only)
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    time_to_first_token_ms: float
    tokens_per_second: float
    cached_prompt_tokens: int = 0   # prompt tokens reused from the instance's KV cache


Event = Union[TokenDelta, ToolCall, GenerateDone]


class InvalidRequest(ValueError):
    """The request is malformed; the message says exactly what is wrong."""


class Busy(RuntimeError):
    """Every model instance is busy and the wait queue is full (or timed out)."""
