"""Scripted fake engines implementing the backend interfaces, driven by the
injected clock: turn-taking and barge-in tests run on a VirtualClock in
microseconds, and protocol tests run the real app without speech services.

One module per backend family; what each fake does is told there:
- vad.py: FakeVad (speech intervals, min_speech/min_silence, pauses, end-of-turn scores)
- asr.py: FakeAsr (interims word by word, finals, flushes and their adoption)
- llm.py: FakeLlm (scripted replies, prefill) and FakeRag (scripted passages)
- tts.py: FakeTts (audio by characters, faster than real time)
- base.py: up/down for all of them
Any fake can be taken down (``up = False``, or ``kill()``): it stops
answering, and streams it serves fail with BackendError, like a killed service.

Here: FakeBackends (one of each, as a session gets them) and FakeProvider
(the BackendPool interface over fakes, for the real app)."""
from __future__ import annotations

import dataclasses

from services.gateway.fakes.asr import FakeAsr, FakeAsrStream
from services.gateway.fakes.base import FakeBackend, FakeStream
from services.gateway.fakes.llm import FakeLlm, FakeRag
from services.gateway.fakes.tts import FakeTts
from services.gateway.fakes.vad import FRAME_MS, FakeVad, FakeVadStream

__all__ = ["FRAME_MS", "FakeAsr", "FakeAsrStream", "FakeBackend", "FakeBackends", "FakeLlm", "FakeProvider",
           "FakeRag", "FakeStream", "FakeTts", "FakeVad", "FakeVadStream"]


@dataclasses.dataclass
class FakeBackends:
    vad: FakeVad
    asr: FakeAsr
    llm: FakeLlm
    rag: FakeRag
    tts: FakeTts
    variants: dict[str, str] = dataclasses.field(default_factory=lambda: {
        s: "stable" for s in ("vad", "asr", "llm", "rag", "tts")})

    @classmethod
    def create(cls, clock, *, speech=(), texts=(), replies=("Hello there.",), passages=(), turn_probs=(),
               **kw) -> "FakeBackends":
        return cls(FakeVad(clock, speech, turn_probs), FakeAsr(clock, texts), FakeLlm(clock, replies),
                   FakeRag(clock, passages), FakeTts(clock))

    def all(self) -> list[FakeBackend]:
        return [self.vad, self.asr, self.llm, self.rag, self.tts]


class FakeProvider:
    """BackendPool's interface over fakes, for the real app in protocol tests."""

    def __init__(self, make) -> None:
        self.make = make
        self.sessions: dict[str, FakeBackends] = {}

    async def start(self) -> None:
        pass

    def for_session(self, session_id: str, decided: dict[str, str] | None = None) -> FakeBackends:
        b = self.make(session_id)
        if decided:
            b.variants = dict(decided)   # a resumed session keeps what it was given
        self.sessions[session_id] = b
        return b

    def canary_addresses(self) -> dict[str, list[str]]:
        return {}

    def release_status(self) -> dict[str, dict[str, str]]:
        return {}

    async def health(self) -> dict[str, dict[str, str]]:
        return {"vad": {"fake-vad": "SERVING"}, "asr": {"fake-asr": "SERVING"},
                "llm": {"fake-llm": "SERVING"}, "rag": {"fake-rag": "SERVING"},
                "tts": {"fake-tts": "SERVING"}}

    async def close(self) -> None:
        pass
