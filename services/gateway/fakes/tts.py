"""FakeTts: ``ms_per_char`` of audio per character of each clause, produced
faster than real time; records each clause, its voice and priority, when it
came, and cancellations."""
from __future__ import annotations

import asyncio
from typing import AsyncIterator

from services.gateway.backends.types import AudioPiece, BackendError, Priority
from services.gateway.fakes.base import FakeBackend


class FakeTts(FakeBackend):
    RATE = 22050

    def __init__(self, clock, ms_per_char: float = 60.0, first_audio_s: float = 0.05,
                 chunk_ms: float = 200.0, rtf: float = 0.05) -> None:
        super().__init__("tts", clock)
        self.ms_per_char, self.first_audio_s, self.chunk_ms, self.rtf = ms_per_char, first_audio_s, chunk_ms, rtf
        self.clauses: list[str] = []
        self.voices: list[str] = []              # of each clause's call, in order
        self.priorities: list[Priority] = []     # of each clause's call, in order
        self.requested_at: list[float] = []
        self.cancelled = self.completed = 0

    async def synthesize(self, text: str, voice: str, speed: float,
                         priority: Priority = Priority.URGENT) -> AsyncIterator[AudioPiece]:
        self._check()
        self.clauses.append(text)
        self.voices.append(voice)
        self.priorities.append(priority)
        self.requested_at.append(self.clock.now())
        total = len(text) * self.ms_per_char / (speed or 1.0)
        try:
            await self.clock.sleep(self.first_audio_s)
            done = 0.0
            while done < total:
                ms = min(self.chunk_ms, total - done)
                if done:
                    await self.clock.sleep(ms * self.rtf / 1000)
                if not self.up:
                    raise BackendError(self.name, self.address, "unavailable: connection reset")
                n = int(self.RATE * ms / 1000)
                yield AudioPiece(b"\x10\x00" * n, self.RATE)
                done += ms
            self.completed += 1
        except (asyncio.CancelledError, GeneratorExit):
            self.cancelled += 1
            raise
