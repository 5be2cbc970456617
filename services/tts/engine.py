"""Clause-by-clause synthesis: validation, chunking, resampling and the
cancellable worker. No gRPC here; tests drive it with a scripted voice.

One synthesis = one worker thread that walks the clauses in order and hands
each clause's audio to the event loop as soon as it exists; the consumer
streams it on. Cancelling (closing the async iterator, which is what a gRPC
cancel does) sets a flag the worker checks before every clause and sentence,
so no further clause is synthesised, and waits (bounded) for the worker to
finish the one piece it may be inside."""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import AsyncIterator, Callable, Mapping

from common.audio import StreamResampler
from common.text import split_clauses
from services.tts.voices import Voice, VoiceInfo

log = logging.getLogger(__name__)

MIN_RATE, MAX_RATE = 0.5, 2.0
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 8000, 48000


@dataclasses.dataclass(frozen=True)
class SynthesisRequest:
    text: str
    voice: str = ""             # "" = default voice
    speaking_rate: float = 0.0  # 0 = 1.0
    sample_rate_hz: int = 0     # 0 = the voice's native rate


@dataclasses.dataclass(frozen=True)
class Job:
    """A validated request, ready to synthesise."""

    clauses: list[str]
    voice: Voice
    length_scale: float
    sample_rate: int


@dataclasses.dataclass(frozen=True)
class AudioPiece:
    audio: bytes           # PCM16 LE mono at sample_rate
    sample_rate: int
    clause_index: int
    clause_text: str       # set on the first piece of each clause
    last: bool = False     # the final piece of the request


@dataclasses.dataclass
class SynthesisReport:
    """What one synthesis did, for metrics and tests."""

    clauses_done: int = 0       # clauses whose synthesis finished
    characters: int = 0         # characters of those clauses
    synth_seconds: float = 0.0  # time inside the voice model
    audio_seconds: float = 0.0
    cancelled: bool = False


@dataclasses.dataclass(frozen=True)
class _End:
    """Worker finished: ``finished`` is False when it stopped early (cancel, error)."""

    finished: bool = False


class TtsEngine:
    def __init__(self, voices: Mapping[str, Voice], default_voice: str = "", max_chars: int = 4000,
                 chunk_ms: int = 200, cancel_wait_s: float = 5.0, workers: int = 8) -> None:
        if not voices:
            raise ValueError("no voices loaded")
        self.voices = dict(voices)
        self.default_voice = default_voice or next(iter(self.voices))
        if self.default_voice not in self.voices:
            raise ValueError(f"default voice {self.default_voice!r} is not among {', '.join(self.voices)}")
        self.max_chars = max_chars
        self.chunk_ms = chunk_ms
        self.cancel_wait_s = cancel_wait_s
        # One worker thread per concurrent synthesis: the default executor is
        # shared with everything else and too small to hold max_streams workers.
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="tts")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def list_voices(self) -> list[VoiceInfo]:
        return [v.info for v in self.voices.values()]

    def prepare(self, req: SynthesisRequest) -> Job:
        """Validate a request; ValueError says exactly what is wrong."""
        if not req.text.strip():
            raise ValueError("text is empty: nothing to synthesise")
        if len(req.text) > self.max_chars:
            raise ValueError(f"text has {len(req.text)} characters, over the limit of {self.max_chars} "
                             "(TTS_MAX_CHARS): split it into several requests")
        voice_id = req.voice or self.default_voice
        if voice_id not in self.voices:
            raise ValueError(f"unknown voice {voice_id!r}: known voices are {', '.join(sorted(self.voices))}")
        rate = req.speaking_rate or 1.0
        if math.isnan(rate) or not (MIN_RATE <= rate <= MAX_RATE):
            raise ValueError(f"speaking_rate {req.speaking_rate} is out of range: use {MIN_RATE}..{MAX_RATE} "
                             "(0 means 1.0)")
        voice = self.voices[voice_id]
        out_rate = req.sample_rate_hz or voice.info.sample_rate
        if not (MIN_SAMPLE_RATE <= out_rate <= MAX_SAMPLE_RATE):
            raise ValueError(f"sample_rate_hz {req.sample_rate_hz} is not supported: use 0 (the voice's "
                             f"{voice.info.sample_rate} Hz) or {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE}")
        return Job(clauses=split_clauses(req.text), voice=voice,
                   length_scale=voice.default_length_scale / rate, sample_rate=out_rate)

    async def stream(self, job: Job, report: SynthesisReport | None = None,
                     cancel: threading.Event | None = None) -> AsyncIterator[AudioPiece]:
        """Audio pieces of at most ``chunk_ms`` each, in clause order, the last one
        flagged ``last``. Closing the iterator early, or setting ``cancel`` (from
        any thread), stops the synthesis before its next clause."""
        report = report if report is not None else SynthesisReport()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[AudioPiece | _End] = asyncio.Queue()
        cancel = cancel if cancel is not None else threading.Event()

        def emit(item: AudioPiece | _End) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is gone: nobody will read further audio
                cancel.set()

        worker = loop.run_in_executor(self._pool, self._produce, job, cancel, emit, report)
        try:
            while True:
                item = await queue.get()
                if isinstance(item, _End):
                    await worker  # re-raises the worker's error, if any
                    report.cancelled = cancel.is_set() and not item.finished
                    return
                yield item
        finally:
            if not worker.done():
                cancel.set()
                report.cancelled = True
                await self._wait_worker(worker)

    async def _wait_worker(self, worker: asyncio.Future) -> None:
        """Bounded wait for the worker to leave the piece it is synthesising."""
        done, _ = await asyncio.wait({worker}, timeout=self.cancel_wait_s)
        if not done:
            log.warning("TTS worker still busy %.1f s after cancel: the voice ignored the stop flag",
                        self.cancel_wait_s)
        elif not worker.cancelled() and worker.exception() is not None:
            log.warning("TTS worker failed after cancel: %r", worker.exception())

    def _produce(self, job: Job, cancel: threading.Event, emit: Callable[[AudioPiece | _End], None],
                 report: SynthesisReport) -> None:
        """Worker thread: synthesise clause after clause until done or cancelled."""
        rate = job.sample_rate
        resampler = StreamResampler(job.voice.info.sample_rate, rate)
        max_bytes = max(2, int(rate * self.chunk_ms / 1000) * 2)
        index, finished = 0, False
        try:
            for index, clause in enumerate(job.clauses):
                if cancel.is_set():
                    return
                first = True
                t0 = time.perf_counter()
                for pcm in job.voice.synthesize(clause, job.length_scale):
                    report.synth_seconds += time.perf_counter() - t0
                    report.audio_seconds += len(pcm) / 2 / job.voice.info.sample_rate
                    if cancel.is_set():
                        return
                    out = resampler.process(pcm)
                    for i in range(0, len(out), max_bytes):
                        emit(AudioPiece(out[i:i + max_bytes], rate, index, clause if first else ""))
                        first = False
                    t0 = time.perf_counter()
                report.clauses_done += 1
                report.characters += len(clause)
            if cancel.is_set():
                return
            emit(AudioPiece(resampler.process(b"", last=True), rate, index, "", last=True))
            finished = True
        finally:
            emit(_End(finished))
