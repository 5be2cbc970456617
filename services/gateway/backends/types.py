"""Plain dataclasses the gateway's logic works with; protobuf stays in convert.py."""
from __future__ import annotations

import dataclasses
import enum
import hashlib


class Priority(enum.Enum):
    """How urgently a request's result is needed; the speech services schedule
    by it across all sessions (the proto's voice.v1.Priority). The gateway
    decides: it knows whether a person is waiting for this result now."""

    URGENT = "urgent"           # the answer's generation, its first clause's audio
    BACKGROUND = "background"   # prefill, later clauses (they play after the first ones)


def conversation_key(session_id: str) -> str:
    """The LLM's key for a session's prompts (llm.proto ``conversation``):
    stable for the session, and not its id, which resumes it (docs/security.md)."""
    return hashlib.sha256(session_id.encode()).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class VadParams:
    threshold: float
    min_speech_ms: int
    min_silence_ms: int
    prefix_padding_ms: int
    pause_events: bool = False   # also report "paused" (first unvoiced frame after speech)
    end_of_turn: bool = False    # score each pause: "stopped" then carries turn_probability


@dataclasses.dataclass(frozen=True)
class VadEvent:
    """A VAD decision, in ms of the VAD stream's own audio (from its first sample)."""

    kind: str                 # "started" | "paused" | "stopped"
    audio_ms: int             # onset (started) or end of the last voiced frame (paused, stopped)
    padded_start_ms: int = 0  # started only: onset minus prefix padding
    decided_at_ms: int = 0    # audio time at which the VAD decided
    # stopped, with VadParams.end_of_turn: probability that the turn is complete
    # (None when the VAD has no end-of-turn model or the score was late)
    turn_probability: float | None = None


@dataclasses.dataclass(frozen=True)
class AsrParams:
    language: str
    interim_interval_ms: int = 0
    beam_size: int = 0        # final pass beam (0 = the ASR service's default)
    omit_words: bool = True   # the gateway does not use word timings: skip their pass


@dataclasses.dataclass(frozen=True)
class AsrResult:
    text: str
    is_final: bool
    utterance_index: int
    audio_processed_ms: int = 0
    provisional: bool = False   # a flush's result: final-quality text, the utterance still open


@dataclasses.dataclass(frozen=True)
class ChatMessage:
    role: str
    content: str
    name: str = ""           # role "tool": the tool; role "assistant" with tool_call_id: the tool called
    tool_call_id: str = ""   # role "tool": the call answered; role "assistant": this message is that call


@dataclasses.dataclass(frozen=True)
class ToolSpec:
    """A function the LLM may call (session.tools entry, as the LLM service takes it)."""

    name: str
    description: str = ""
    parameters_json: str = ""   # JSON schema of the arguments; "" = none


@dataclasses.dataclass(frozen=True)
class Tools:
    """What one response offers the LLM: the tools and the choice."""

    specs: tuple[ToolSpec, ...]
    choice: str = "auto"        # auto | required | function (choice "none" offers nothing: no Tools)
    name: str = ""              # choice "function": the tool to call


@dataclasses.dataclass(frozen=True)
class ToolCall:
    """The LLM's call of a tool: ``arguments`` is JSON valid against its schema."""

    name: str
    arguments: str


@dataclasses.dataclass(frozen=True)
class Passage:
    source: str
    title: str
    text: str
    score: float


@dataclasses.dataclass(frozen=True)
class AudioPiece:
    """A chunk of synthesised PCM16 mono audio."""

    pcm: bytes
    rate: int


@dataclasses.dataclass
class LlmUsage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = ""
    cached_prompt_tokens: int = 0   # prompt tokens the LLM reused from its KV cache


class BackendError(Exception):
    """A speech service could not be reached or failed; names it for the client.
    ``retryable`` is False when the service rejected the request itself (a
    retry would be rejected too, and the service is not failing)."""

    def __init__(self, backend: str, address: str, detail: str = "", retryable: bool = True) -> None:
        self.backend, self.address, self.detail, self.retryable = backend, address, detail, retryable
        super().__init__(self.message)

    @property
    def message(self) -> str:
        msg = f"{self.backend} at {self.address} is unavailable"
        return f"{msg}: {self.detail}" if self.detail else msg
