"""A session's durable state: its configuration and its conversation items
(with truncation points). This is what Redis stores, so a client reconnecting
with the session id, to this or another gateway process, continues the same
conversation. Wire shapes follow the Realtime API GA session and item objects."""
from __future__ import annotations

import dataclasses
import time
from typing import Any

SUPPORTED_INPUT_RATES = (16000, 24000)
SUPPORTED_OUTPUT_RATES = (16000, 22050, 24000)


EAGERNESS = ("low", "medium", "high", "auto")
# The Realtime API's built-in voices. Clients written for it send one by
# default (openai-agents' RealtimeAgent: "ash"); they mean "a voice", not a
# particular local one, so they get the TTS service's default voice.
OPENAI_VOICES = frozenset(("alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage",
                           "shimmer", "verse", "marin", "cedar"))


def tts_voice(voice: str) -> str:
    """The voice id to ask the TTS for ("" = its default)."""
    return "" if voice in OPENAI_VOICES else voice


@dataclasses.dataclass
class TurnDetection:
    """server_vad settings plus our extensions: two for barge-in, one for
    preemptive generation (start the answer inside the silence window).
    ``type`` "semantic_vad" makes the silence window depend on the VAD's
    end-of-turn probability, the wait of an unfinished turn set by
    ``eagerness`` (services/gateway/semantic.py)."""

    type: str = "server_vad"      # server_vad | semantic_vad
    eagerness: str = "auto"       # semantic_vad: low | medium | high | auto
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    create_response: bool = True
    interrupt_response: bool = True
    min_interrupt_ms: int = 300
    false_interruption_timeout_ms: int = 800
    preemptive_generation: bool = True

    def wire(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if self.type != "semantic_vad":
            del d["eagerness"]
        return d


@dataclasses.dataclass
class SessionConfig:
    model: str = "local"
    instructions: str = ""
    output_modalities: list[str] = dataclasses.field(default_factory=lambda: ["audio"])
    input_rate: int = 24000
    output_rate: int = 24000
    voice: str = ""
    speed: float = 1.0
    turn_detection: TurnDetection | None = dataclasses.field(default_factory=TurnDetection)
    retrieval_enabled: bool = True
    retrieval_k: int = 3
    max_output_tokens: int | str = "inf"
    tools: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    tool_choice: str | dict[str, str] = "auto"   # auto | none | required | {"type": "function", "name"}
    # audio.input.noise_reduction: what the client says of its microphone.
    # "near_field" (a headset, a phone at the ear) carries no echo: the echo
    # canceller is off for the session; "far_field" (laptop, speakerphone) and
    # unset (None) keep the gateway's default (GATEWAY_ECHO_CANCEL).
    noise_reduction: str | None = None

    def wire(self, session_id: str) -> dict[str, Any]:
        return {
            "type": "realtime",
            "object": "realtime.session",
            "id": session_id,
            "model": self.model,
            "output_modalities": list(self.output_modalities),
            "instructions": self.instructions,
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": self.input_rate},
                    "transcription": {"model": "local-whisper"},
                    "noise_reduction": {"type": self.noise_reduction} if self.noise_reduction else None,
                    "turn_detection": self.turn_detection.wire() if self.turn_detection else None,
                },
                "output": {
                    "format": {"type": "audio/pcm", "rate": self.output_rate},
                    "voice": self.voice or "default",
                    "speed": self.speed,
                },
            },
            "tools": self.tools,
            "tool_choice": self.tool_choice,
            "max_output_tokens": self.max_output_tokens,
            "tracing": None,
            "truncation": "auto",
            "prompt": None,
            "include": None,
            "retrieval": {"enabled": self.retrieval_enabled, "k": self.retrieval_k},
        }

    def to_store(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_store(cls, d: dict[str, Any]) -> "SessionConfig":
        d = dict(d)
        td = d.pop("turn_detection", None)
        known = {f.name for f in dataclasses.fields(cls)}
        cfg = cls(**{k: v for k, v in d.items() if k in known})
        cfg.turn_detection = TurnDetection(**td) if td else None
        return cfg


@dataclasses.dataclass
class Clause:
    """One spoken clause of an assistant item, placed on the item's audio timeline."""

    text: str
    start_ms: float
    end_ms: float


@dataclasses.dataclass
class Item:
    id: str
    type: str = "message"              # message | function_call | function_call_output
    role: str = ""                     # user | assistant | system
    content: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    status: str = "completed"
    call_id: str = ""
    name: str = ""
    arguments: str = ""
    output: str = ""
    # Internal: the assistant item's audio timeline, so a truncate maps heard ms to text.
    audio_ms: float = 0.0
    clauses: list[Clause] = dataclasses.field(default_factory=list)
    truncated_ms: float | None = None

    def wire(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "object": "realtime.item", "type": self.type,
                             "status": self.status}
        if self.type == "message":
            d["role"] = self.role
            d["content"] = [dict(c) for c in self.content]
        elif self.type == "function_call":
            d.update(call_id=self.call_id, name=self.name, arguments=self.arguments)
        elif self.type == "function_call_output":
            d.update(call_id=self.call_id, output=self.output)
        return d

    def text(self) -> str:
        """What the LLM sees of this item (for assistant audio: only what was heard)."""
        if self.type == "function_call_output":
            return self.output
        if self.type == "function_call":
            return f"{self.name}({self.arguments})"
        parts = []
        for c in self.content:
            t = c.get("text") if c.get("type") in ("input_text", "output_text", "text") else c.get("transcript")
            if t:
                parts.append(t)
        return " ".join(parts).strip()

    def to_store(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_store(cls, d: dict[str, Any]) -> "Item":
        d = dict(d)
        clauses = [Clause(**c) for c in d.pop("clauses", [])]
        known = {f.name for f in dataclasses.fields(cls)}
        item = cls(**{k: v for k, v in d.items() if k in known})
        item.clauses = clauses
        return item


def heard_text(clauses: list[Clause], played_ms: float) -> str:
    """The text a listener heard after ``played_ms`` of an item's audio: whole
    clauses that finished playing plus the share of words of the clause that was
    playing, in proportion to its played time (cut at a word boundary)."""
    out: list[str] = []
    for c in clauses:
        if played_ms >= c.end_ms - 1e-6:
            out.append(c.text)
            continue
        if played_ms > c.start_ms and c.end_ms > c.start_ms:
            words = c.text.split()
            n = int(len(words) * (played_ms - c.start_ms) / (c.end_ms - c.start_ms))
            if n:
                out.append(" ".join(words[:n]))
        break
    return " ".join(out).strip()


@dataclasses.dataclass
class SessionState:
    id: str
    config: SessionConfig
    items: list[Item] = dataclasses.field(default_factory=list)
    created_at: float = dataclasses.field(default_factory=time.time)
    # Who created it (access.Principal.id): only they may resume it. Sessions
    # stored before owners existed belong to the keyless local principal.
    owner: str = "local"
    # Backend variant per service ("stable" | "canary"), decided at creation
    # (routing.py) and kept for life: a resume on any gateway gets the same.
    variants: dict[str, str] = dataclasses.field(default_factory=dict)
    # A sensitive tool's call waiting for the user's yes (confirm.py):
    # {"name", "arguments", "asked": the item id of the question}.
    pending_call: dict[str, str] | None = None

    def find(self, item_id: str) -> Item | None:
        for it in self.items:
            if it.id == item_id:
                return it
        return None

    def insert(self, item: Item, previous_item_id: str | None) -> str | None:
        """Insert after ``previous_item_id`` (None = append, "root" = first);
        returns the id of the item it now follows."""
        if previous_item_id is None:
            prev = self.items[-1].id if self.items else None
            self.items.append(item)
            return prev
        if previous_item_id == "root":
            self.items.insert(0, item)
            return None
        for i, it in enumerate(self.items):
            if it.id == previous_item_id:
                self.items.insert(i + 1, item)
                return previous_item_id
        raise KeyError(previous_item_id)

    def delete(self, item_id: str) -> bool:
        for i, it in enumerate(self.items):
            if it.id == item_id:
                del self.items[i]
                return True
        return False

    def to_store(self) -> dict[str, Any]:
        return {"id": self.id, "config": self.config.to_store(), "created_at": self.created_at,
                "owner": self.owner, "variants": dict(self.variants), "items": [it.to_store() for it in self.items],
                "pending_call": self.pending_call}

    @classmethod
    def from_store(cls, d: dict[str, Any]) -> "SessionState":
        return cls(id=d["id"], config=SessionConfig.from_store(d["config"]),
                   items=[Item.from_store(x) for x in d.get("items", [])],
                   created_at=d.get("created_at", time.time()), owner=d.get("owner", "local"),
                   variants=dict(d.get("variants") or {}), pending_call=d.get("pending_call"))
