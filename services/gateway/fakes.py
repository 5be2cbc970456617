"""Scripted fake engines implementing the backend interfaces, driven by the
injected clock: turn-taking and barge-in tests run on a VirtualClock in
microseconds, and protocol tests run the real app without speech services.

- FakeVad: speech wherever the script says (intervals in seconds of session
  audio), decided with min_speech/min_silence like the real VAD (and a
  "paused" on the first unvoiced frame after speech when asked for).
- FakeAsr: utterance k of a stream transcribes to texts[k]; interims reveal
  one word per ``ms_per_word`` of audio received (with ``every_chunk``, an
  interim for every chunk, like a real ASR re-decoding as audio comes); the
  final (``finals[k]`` if given, else texts[k]) comes ``final_latency_s``
  after force_eou. A flush gives that text (the words heard so far when the
  audio does not cover them all) ``final_latency_s`` later as a provisional
  result; force_eou with use_provisional makes it the final.
- FakeLlm: streams the scripted reply word by word; records every request
  and when it came.
- FakeTts: ``ms_per_char`` of audio per character of each clause, produced
  faster than real time; records each clause, when it came, and cancellations.
Any fake can be taken down (``up = False``): it stops answering, and streams
it serves fail with BackendError, like a killed service."""
from __future__ import annotations

import asyncio
import dataclasses
from typing import AsyncIterator, Sequence

from services.gateway.backends.types import (
    AsrParams, AsrResult, AudioPiece, BackendError, ChatMessage, LlmUsage, Passage, VadEvent, VadParams,
)

FRAME_MS = 10


class _Fake:
    def __init__(self, name: str, clock) -> None:
        self.name, self.address, self.clock = name, f"fake-{name}", clock
        self.up = True
        self._streams: list = []

    async def ready(self) -> bool:
        return self.up

    def _check(self) -> None:
        if not self.up:
            raise BackendError(self.name, self.address, "unavailable: connection refused")

    def kill(self) -> None:
        self.up = False
        for s in self._streams:
            s.fail(BackendError(self.name, self.address, "unavailable: connection reset"))
        self._streams.clear()


class _FakeStream:
    def __init__(self) -> None:
        self._out: asyncio.Queue = asyncio.Queue()
        self.closed = False
        self.traces: list[dict[str, str]] = []   # in-band trace contexts received

    async def send_trace(self, carrier: dict[str, str]) -> None:
        self.traces.append(dict(carrier))

    def fail(self, exc: BackendError) -> None:
        self._out.put_nowait(exc)

    async def _iter(self):
        while True:
            item = await self._out.get()
            if item is None:
                return
            if isinstance(item, BackendError):
                raise item
            yield item

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._out.put_nowait(None)


class FakeVadStream(_FakeStream):
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

    def _frame(self, start: float, voiced: bool) -> None:
        rel = start - self.base_ms
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
                self._out.put_nowait(VadEvent("stopped", int(self._last_voiced_end), 0, int(rel + FRAME_MS)))
            elif self.p.pause_events and not self._paused:
                self._paused = True
                self._out.put_nowait(VadEvent("paused", int(self._last_voiced_end), 0, int(rel + FRAME_MS)))

    def events(self) -> AsyncIterator[VadEvent]:
        return self._iter()


class FakeVad(_Fake):
    def __init__(self, clock, speech: Sequence[tuple[float, float]] = ()) -> None:
        super().__init__("vad", clock)
        self.speech = list(speech)
        self.stalled = False
        self.params: list[VadParams] = []

    def speaking(self, ms: float) -> bool:
        return any(a * 1000 <= ms < b * 1000 for a, b in self.speech)

    async def open(self, params: VadParams) -> FakeVadStream:
        self._check()
        self.params.append(params)
        s = FakeVadStream(self, params)
        self._streams.append(s)
        return s


class FakeAsrStream(_FakeStream):
    def __init__(self, owner: "FakeAsr") -> None:
        super().__init__()
        self.owner = owner
        self.index = 0
        self._ms = 0.0
        self._shown = 0
        self._tasks: set[asyncio.Task] = set()
        self._flush: dict | None = None

    def _words(self) -> list[str]:
        texts = self.owner.texts
        return texts[self.owner.utterances_started].split() if self.owner.utterances_started < len(texts) else []

    async def send(self, pcm16k: bytes) -> None:
        if self.closed or not self.owner.up:
            raise BackendError("asr", self.owner.address, "unavailable: stream closed")
        self._ms += len(pcm16k) / 32
        words = self._words()
        n = min(len(words), int(self._ms // self.owner.ms_per_word))
        if n > self._shown or (self.owner.every_chunk and n):
            self._shown = n
            self._out.put_nowait(AsrResult(" ".join(words[:n]), False, self.index, int(self._ms)))

    def _final_text(self) -> str:
        k, finals = self.owner.utterances_started, self.owner.finals
        return finals[k] if k < len(finals) else " ".join(self._words())

    def _spawn(self, coro) -> None:
        t = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def flush(self) -> None:
        if self.closed or not self.owner.up:
            raise BackendError("asr", self.owner.address, "unavailable: stream closed")
        words = self._words()
        heard = int(self._ms // self.owner.ms_per_word)
        text = self._final_text() if heard >= len(words) else " ".join(words[:heard])
        fl = {"text": text, "idx": self.index, "ms": self._ms, "adopted": False,
              "done": asyncio.get_running_loop().create_future()}
        self._flush = fl
        self.owner.flushes += 1
        self._spawn(self._run_flush(fl))

    async def _run_flush(self, fl: dict) -> None:
        await self.owner.clock.sleep(self.owner.final_latency_s)
        fl["done"].set_result(None)
        if not self.closed and not fl["adopted"] and fl["idx"] == self.index:
            self._out.put_nowait(AsrResult(fl["text"], False, fl["idx"], int(fl["ms"]), True))

    async def _adopted_final(self, fl: dict) -> None:
        await fl["done"]
        if not self.closed:
            self._out.put_nowait(AsrResult(fl["text"], True, fl["idx"], int(fl["ms"])))

    async def end_utterance(self, use_provisional: bool = False) -> None:
        if self.closed or not self.owner.up:
            raise BackendError("asr", self.owner.address, "unavailable: stream closed")
        fl, self._flush = (self._flush if use_provisional else None), None
        if fl is not None:
            fl["adopted"] = True
            self.owner.adopted += 1
            self.owner.utterances_started += 1
            self.index += 1
            self._ms, self._shown = 0.0, 0
            self._spawn(self._adopted_final(fl))
            # Like a network write: the reader may get the (ready) final before we return.
            for _ in range(3):
                await asyncio.sleep(0)
            return
        text = self._final_text()
        idx, ms = self.index, self._ms
        self.owner.utterances_started += 1
        self.index += 1
        self._ms, self._shown = 0.0, 0
        self._spawn(self._final(text, idx, ms))

    async def _final(self, text: str, idx: int, ms: float) -> None:
        await self.owner.clock.sleep(self.owner.final_latency_s)
        if not self.closed:
            self._out.put_nowait(AsrResult(text, True, idx, int(ms)))

    def results(self) -> AsyncIterator[AsrResult]:
        return self._iter()

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        await super().close()


class FakeAsr(_Fake):
    def __init__(self, clock, texts: Sequence[str] = (), ms_per_word: float = 250,
                 final_latency_s: float = 0.1) -> None:
        super().__init__("asr", clock)
        self.texts = list(texts)
        self.ms_per_word, self.final_latency_s = ms_per_word, final_latency_s
        self.every_chunk = False
        self.finals: list[str] = []
        self.utterances_started = 0
        self.flushes = 0      # flush requests received
        self.adopted = 0      # finals that took a flush's result

    async def open(self, params: AsrParams) -> FakeAsrStream:
        self._check()
        s = FakeAsrStream(self)
        self._streams.append(s)
        return s


class FakeLlm(_Fake):
    def __init__(self, clock, replies: Sequence[str] = ("Hello there.",), first_token_s: float = 0.1,
                 token_s: float = 0.01) -> None:
        super().__init__("llm", clock)
        self.replies = list(replies)
        self.first_token_s, self.token_s = first_token_s, token_s
        self.requests: list[list[ChatMessage]] = []
        self.requested_at: list[float] = []
        self.passages: list[list[Passage]] = []
        self.prefills: list[list[ChatMessage]] = []
        self.prefill_s = 0.02
        self.cancelled = self.completed = 0

    async def prefill(self, messages: Sequence[ChatMessage], request_id: str) -> str:
        self._check()
        self.prefills.append(list(messages))
        await self.clock.sleep(self.prefill_s)
        return "prefill"

    async def generate(self, messages: Sequence[ChatMessage], passages: Sequence[Passage],
                       max_tokens: int, request_id: str, usage: LlmUsage) -> AsyncIterator[str]:
        self._check()
        reply = self.replies[min(len(self.requests), len(self.replies) - 1)]
        self.requests.append(list(messages))
        self.requested_at.append(self.clock.now())
        self.passages.append(list(passages))
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


class FakeTts(_Fake):
    RATE = 22050

    def __init__(self, clock, ms_per_char: float = 60.0, first_audio_s: float = 0.05,
                 chunk_ms: float = 200.0, rtf: float = 0.05) -> None:
        super().__init__("tts", clock)
        self.ms_per_char, self.first_audio_s, self.chunk_ms, self.rtf = ms_per_char, first_audio_s, chunk_ms, rtf
        self.clauses: list[str] = []
        self.requested_at: list[float] = []
        self.cancelled = self.completed = 0

    async def synthesize(self, text: str, voice: str, speed: float) -> AsyncIterator[AudioPiece]:
        self._check()
        self.clauses.append(text)
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


class FakeRag(_Fake):
    def __init__(self, clock, passages: Sequence[Passage] = (), latency_s: float = 0.02) -> None:
        super().__init__("rag", clock)
        self.passages, self.latency_s = list(passages), latency_s
        self.queries: list[str] = []

    async def search(self, query: str, k: int, min_score: float) -> list[Passage]:
        self._check()
        self.queries.append(query)
        await self.clock.sleep(self.latency_s)
        return [p for p in self.passages if p.score >= min_score][:k]


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
    def create(cls, clock, *, speech=(), texts=(), replies=("Hello there.",), passages=(), **kw) -> "FakeBackends":
        return cls(FakeVad(clock, speech), FakeAsr(clock, texts), FakeLlm(clock, replies),
                   FakeRag(clock, passages), FakeTts(clock))

    def all(self) -> list[_Fake]:
        return [self.vad, self.asr, self.llm, self.rag, self.tts]


class FakeProvider:
    """BackendPool's interface over fakes, for the real app in protocol tests."""

    def __init__(self, make) -> None:
        self.make = make
        self.sessions: dict[str, FakeBackends] = {}

    def for_session(self, session_id: str) -> FakeBackends:
        b = self.make(session_id)
        self.sessions[session_id] = b
        return b

    async def health(self) -> dict[str, dict[str, str]]:
        return {"vad": {"fake-vad": "SERVING"}, "asr": {"fake-asr": "SERVING"},
                "llm": {"fake-llm": "SERVING"}, "rag": {"fake-rag": "SERVING"},
                "tts": {"fake-tts": "SERVING"}}

    async def close(self) -> None:
        pass
