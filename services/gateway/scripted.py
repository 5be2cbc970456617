"""A scripted session on a virtual clock: a Conversation wired to the fake
engines, fed with audio in real-time steps of virtual time, recording every
server event with the time it was emitted. Turn-taking tests use it to assert
each event and its time, deterministically."""
from __future__ import annotations

import asyncio
import base64
import dataclasses
from typing import Any

from common.clock import VirtualClock
from services.gateway.conversation import Conversation
from services.gateway.defaults import default_config
from services.gateway.fakes import FakeBackends
from services.gateway.fakes.vad import FRAME_MS as FAKE_VAD_FRAME_MS
from services.gateway.session import SessionState
from services.gateway.settings import GatewaySettings
from services.gateway.store import SessionStore

STEP_S = 0.02   # audio chunk and clock step: 20 ms


@dataclasses.dataclass
class Timed:
    at: float
    event: dict[str, Any]

    @property
    def type(self) -> str:
        return self.event["type"]


class ScriptedSession:
    def __init__(self, backends: FakeBackends | None = None, clock: VirtualClock | None = None,
                 settings: GatewaySettings | None = None, input_rate: int = 16000,
                 chunked: bool = False, **fake_script: Any) -> None:
        """``chunked``: audio reaches the fake VAD and ASR in the settings'
        vad_chunk_ms/asr_chunk_ms chunks; otherwise (most tests, whose times are
        exact to the fake VAD's 10 ms frames) each step's audio as it comes."""
        self.clock = clock or VirtualClock()
        self.settings = settings or GatewaySettings(redis_url="")
        if not chunked:
            self.settings = dataclasses.replace(self.settings, vad_chunk_ms=FAKE_VAD_FRAME_MS, asr_chunk_ms=0)
        self.b = backends or FakeBackends.create(self.clock, **fake_script)
        self.store = SessionStore("", self.settings.session_ttl_s)
        state = SessionState(id="sess_test", config=default_config(self.settings))
        # 16 kHz input needs no resampling, so audio positions are exact to the sample.
        state.config.input_rate = input_rate
        self.conv = Conversation(state, self.settings, self.b, self.clock, self.store)
        self.events: list[Timed] = []
        self._drain: asyncio.Task | None = None
        self.rate = state.config.input_rate

    async def __aenter__(self) -> "ScriptedSession":
        self.conv.start()
        self._drain = asyncio.create_task(self._collect())
        await self.clock.advance(0)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.conv.close()
        if self._drain is not None:
            self._drain.cancel()
            await asyncio.wait([self._drain], timeout=1.0)

    async def _collect(self) -> None:
        while True:
            q = await self.conv.outbox.get()
            if q is None:
                return
            self.events.append(Timed(q.at, q.event))

    async def send(self, event: dict[str, Any]) -> None:
        await self.conv.handle(event)
        await self.clock.advance(0)

    async def run_audio(self, seconds: float) -> None:
        """Stream ``seconds`` of input audio in real time (what is speech is up to the fake VAD)."""
        n = int(round(self.rate * STEP_S)) * 2
        chunk = base64.b64encode(b"\x01\x00" * (n // 2)).decode()
        for _ in range(int(round(seconds / STEP_S))):
            # A real-time client sends each chunk when its last sample is recorded.
            await self.clock.advance(STEP_S, step=STEP_S)
            await self.conv.handle({"type": "input_audio_buffer.append", "audio": chunk})

    async def wait(self, seconds: float) -> None:
        """Let virtual time pass without sending audio."""
        await self.clock.advance(seconds, step=STEP_S)

    # -- queries -------------------------------------------------------------------
    def of(self, type: str) -> list[Timed]:
        return [e for e in self.events if e.type == type]

    def first(self, type: str) -> Timed:
        found = self.of(type)
        assert found, f"no {type} event; got {[e.type for e in self.events]}"
        return found[0]

    def types(self) -> list[str]:
        return [e.type for e in self.events if e.type not in (
            "response.output_audio.delta", "response.output_audio_transcript.delta",
            "conversation.item.input_audio_transcription.delta")]
