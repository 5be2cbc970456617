"""FakeAsr: utterance k of a stream transcribes to texts[k]; interims reveal
one word per ``ms_per_word`` of audio received (with ``every_chunk``, an
interim for every chunk, like a real ASR re-decoding as audio comes); the
final (``finals[k]`` if given, else texts[k]) comes ``final_latency_s``
after force_eou. A flush gives that text (the words heard so far when the
audio does not cover them all) ``final_latency_s`` later as a provisional
result; force_eou with use_provisional makes it the final."""
from __future__ import annotations

import asyncio
from typing import AsyncIterator, Sequence

from services.gateway.backends.types import AsrParams, AsrResult, BackendError
from services.gateway.fakes.base import FakeBackend, FakeStream


class FakeAsrStream(FakeStream):
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
            r = AsrResult(" ".join(words[:n]), False, self.index, int(self._ms))
            if self.owner.interim_lag_s:
                self._spawn(self._late_interim(r))
            else:
                self._out.put_nowait(r)

    async def _late_interim(self, r: AsrResult) -> None:
        await self.owner.clock.sleep(self.owner.interim_lag_s)
        if not self.closed and r.utterance_index == self.index:
            self._out.put_nowait(r)

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
            self.owner.final_audio_ms.append(fl["ms"])
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
        self.owner.final_audio_ms.append(ms)
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


class FakeAsr(FakeBackend):
    def __init__(self, clock, texts: Sequence[str] = (), ms_per_word: float = 250,
                 final_latency_s: float = 0.1) -> None:
        super().__init__("asr", clock)
        self.texts = list(texts)
        self.ms_per_word, self.final_latency_s = ms_per_word, final_latency_s
        self.every_chunk = False
        # Interims delivered this late: background work queued behind a busy host's urgent work.
        self.interim_lag_s = 0.0
        self.finals: list[str] = []
        self.utterances_started = 0
        self.flushes = 0      # flush requests received
        self.adopted = 0      # finals that took a flush's result
        self.final_audio_ms: list[float] = []   # audio each final's stream had of its utterance

    async def open(self, params: AsrParams) -> FakeAsrStream:
        self._check()
        s = FakeAsrStream(self)
        self._streams.append(s)
        return s
