"""FakeVad: speech wherever the script says (intervals in seconds of session
audio), decided frame by frame with min_speech/min_silence like the real VAD
(and a "paused" on the first unvoiced frame after speech when asked for).
With VadParams.end_of_turn, the k-th stop carries ``turn_probs[k]`` (None
past the end of the list: a VAD without the model)."""
from __future__ import annotations

from typing import AsyncIterator, Sequence

from services.gateway.backends.types import BackendError, VadEvent, VadParams
from services.gateway.fakes.base import FakeBackend, FakeStream

FRAME_MS = 10


class FakeVadStream(FakeStream):
    def __init__(self, owner: "FakeVad", params: VadParams) -> None:
        super().__init__()
        self.owner, self.p = owner, params
        # A real-time client: the stream's first sample is the audio of "now".
        self.base_ms = round(owner.clock.now() * 1000 / FRAME_MS) * FRAME_MS
        self._received = self._classified = 0.0
        self._speech_run = self._silence_run = 0
        self._in_speech = False
        self._paused = False
        self._onset = self._last_voiced_end = 0.0

    async def send(self, pcm16k: bytes) -> None:
        while self.owner.stalled:       # a slow VAD: input audio backs up in the gateway
            await self.owner.clock.sleep(0.01)
        if self.closed or not self.owner.up:
            raise BackendError("vad", self.owner.address, "unavailable: stream closed")
        self._received += len(pcm16k) / 32
        while self._classified + FRAME_MS <= self._received + 1e-9:
            start = self._classified
            self._classified += FRAME_MS
            self._frame(start, self.owner.speaking(self.base_ms + start + FRAME_MS / 2))

    def _frame(self, rel: float, voiced: bool) -> None:
        """The frame at ``rel`` ms of the stream's audio (its events' times are
        the stream's own, as the real VAD's; the script's are absolute)."""
        if voiced:
            if self._speech_run == 0:
                self._onset = rel
            self._speech_run += FRAME_MS
            self._silence_run = 0
            self._paused = False
            self._last_voiced_end = rel + FRAME_MS
            if not self._in_speech and self._speech_run >= self.p.min_speech_ms:
                self._in_speech = True
                self._out.put_nowait(VadEvent("started", int(self._onset),
                                              int(max(0, self._onset - self.p.prefix_padding_ms)),
                                              int(rel + FRAME_MS)))
        else:
            self._silence_run += FRAME_MS
            if not self._in_speech:
                self._speech_run = 0
            elif self._silence_run >= self.p.min_silence_ms:
                self._in_speech = False
                self._speech_run = 0
                self._out.put_nowait(VadEvent("stopped", int(self._last_voiced_end), 0, int(rel + FRAME_MS),
                                              self.owner.next_turn_probability(self.p)))
            elif self.p.pause_events and not self._paused:
                self._paused = True
                self._out.put_nowait(VadEvent("paused", int(self._last_voiced_end), 0, int(rel + FRAME_MS)))

    def events(self) -> AsyncIterator[VadEvent]:
        return self._iter()


class FakeVad(FakeBackend):
    def __init__(self, clock, speech: Sequence[tuple[float, float]] = (),
                 turn_probs: Sequence[float] = ()) -> None:
        super().__init__("vad", clock)
        self.speech = list(speech)
        self.turn_probs = list(turn_probs)
        self.stops = 0
        self.stalled = False
        self.params: list[VadParams] = []

    def next_turn_probability(self, params: VadParams) -> float | None:
        k, self.stops = self.stops, self.stops + 1
        return self.turn_probs[k] if params.end_of_turn and k < len(self.turn_probs) else None

    def speaking(self, ms: float) -> bool:
        return any(a * 1000 <= ms < b * 1000 for a, b in self.speech)

    async def open(self, params: VadParams) -> FakeVadStream:
        self._check()
        self.params.append(params)
        s = FakeVadStream(self, params)
        self._streams.append(s)
        return s
