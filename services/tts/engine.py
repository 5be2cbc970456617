"""Clause-by-clause synthesis: validation, chunking, resampling and the
cancellable producer. No gRPC here; tests drive it with a scripted voice.

One synthesis = one ``_Synthesis`` on the process-wide scheduler
(scheduler.py): each clause is one piece, run on a worker thread when its turn
comes (urgent before background, across all streams), and its audio is handed
to the event loop as soon as it exists; the consumer streams it on.
Cancelling (closing the async iterator, which is what a gRPC cancel does)
sets a flag the producer checks before every clause and sentence and takes
its next clause out of the queue, and waits (bounded) for the worker to
finish the one piece it may be inside."""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import threading
import time
from typing import AsyncIterator, Callable, Mapping

from common.audio import StreamResampler
from common.text import split_clauses
from services.tts.scheduler import Priority, Scheduler
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
    priority: Priority = Priority.URGENT


@dataclasses.dataclass(frozen=True)
class Job:
    """A validated request, ready to synthesise."""

    clauses: list[str]
    voice: Voice
    length_scale: float
    sample_rate: int
    priority: Priority = Priority.URGENT


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
    """Producer finished: ``finished`` is False when it stopped early (cancel, error)."""

    finished: bool = False
    error: BaseException | None = None


class TtsEngine:
    def __init__(self, voices: Mapping[str, Voice], default_voice: str = "", max_chars: int = 4000,
                 chunk_ms: int = 200, cancel_wait_s: float = 5.0,
                 scheduler: Scheduler | None = None) -> None:
        if not voices:
            raise ValueError("no voices loaded")
        self.voices = dict(voices)
        self.default_voice = default_voice or next(iter(self.voices))
        if self.default_voice not in self.voices:
            raise ValueError(f"default voice {self.default_voice!r} is not among {', '.join(self.voices)}")
        self.max_chars = max_chars
        self.chunk_ms = chunk_ms
        self.cancel_wait_s = cancel_wait_s
        # Shared by every stream of the process: the workers are the CPU budget.
        self.scheduler = scheduler if scheduler is not None else Scheduler()

    def close(self) -> None:
        self.scheduler.close()
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
                   length_scale=voice.default_length_scale / rate, sample_rate=out_rate,
                   priority=req.priority)

    async def stream(self, job: Job, report: SynthesisReport | None = None,
                     cancel: threading.Event | None = None) -> AsyncIterator[AudioPiece]:
        """Audio pieces of at most ``chunk_ms`` each, in clause order, the last one
        flagged ``last``. Closing the iterator early, or setting ``cancel`` (from
        any thread), stops the synthesis before its next clause."""
        report = report if report is not None else SynthesisReport()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[AudioPiece | _End] = asyncio.Queue()
        cancel = cancel if cancel is not None else threading.Event()
        ended = asyncio.Event()

        def emit(item: AudioPiece | _End) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
                if isinstance(item, _End):
                    loop.call_soon_threadsafe(ended.set)
            except RuntimeError:  # the loop is gone: nobody will read further audio
                cancel.set()

        ticket = self.scheduler.submit(_Synthesis(job, cancel, emit, report, self.chunk_ms), job.priority)
        try:
            while True:
                item = await queue.get()
                if isinstance(item, _End):
                    ended.set()   # its own callback may not have run yet
                    if item.error is not None:
                        raise item.error
                    report.cancelled = cancel.is_set() and not item.finished
                    return
                yield item
        finally:
            if not ended.is_set():
                cancel.set()
                report.cancelled = True
                self.scheduler.cancel(ticket)
                await self._wait_end(ended)

    async def _wait_end(self, ended: asyncio.Event) -> None:
        """Bounded wait for the producer to leave the piece it is synthesising."""
        try:
            async with asyncio.timeout(self.cancel_wait_s):   # not wait_for: it can drop a cancel (gh-86296)
                await ended.wait()
        except TimeoutError:
            log.warning("TTS worker still busy %.1f s after cancel: the voice ignored the stop flag",
                        self.cancel_wait_s)


class _Synthesis:
    """One request's producer: each ``step`` (a worker thread) synthesises one clause."""

    def __init__(self, job: Job, cancel: threading.Event, emit: Callable[[AudioPiece | _End], None],
                 report: SynthesisReport, chunk_ms: int) -> None:
        self.job, self.cancel, self.emit, self.report = job, cancel, emit, report
        self.resampler = StreamResampler(job.voice.info.sample_rate, job.sample_rate)
        self.max_bytes = max(2, int(job.sample_rate * chunk_ms / 1000) * 2)
        self.index = 0
        self.finished = False

    def step(self) -> bool:
        job = self.job
        if self.cancel.is_set():
            return False
        if self.index < len(job.clauses) and not self._clause(job.clauses[self.index]):
            return False
        if self.index < len(job.clauses):
            return True
        # The end goes out with the last clause, not after another turn in the queue:
        # the caller may be waiting for it to send its next clause.
        if not self.cancel.is_set():
            self.emit(AudioPiece(self.resampler.process(b"", last=True), job.sample_rate,
                                 max(self.index - 1, 0), "", last=True))
            self.finished = True
        return False

    def _clause(self, clause: str) -> bool:
        """Synthesise one clause; False when a cancel stopped it."""
        job, report, rate = self.job, self.report, self.job.sample_rate
        first = True
        t0 = time.perf_counter()
        for pcm in job.voice.synthesize(clause, job.length_scale):
            report.synth_seconds += time.perf_counter() - t0
            report.audio_seconds += len(pcm) / 2 / job.voice.info.sample_rate
            if self.cancel.is_set():
                return False
            out = self.resampler.process(pcm)
            for i in range(0, len(out), self.max_bytes):
                self.emit(AudioPiece(out[i:i + self.max_bytes], rate, self.index, clause if first else ""))
                first = False
            t0 = time.perf_counter()
        report.clauses_done += 1
        report.characters += len(clause)
        self.index += 1
        return True

    def finish(self, error: BaseException | None) -> None:
        self.emit(_End(self.finished, error))
