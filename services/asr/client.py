"""A small client of the Recognizer wire protocol (stubs + grpc only, no
service internals), used by the integration tests and the benchmark: stream
utterances in fixed-size chunks, optionally at real-time pace, and record
when each response arrived relative to what had been sent."""
from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import AsyncIterator, Sequence

import grpc

from common.stubs import asr_pb2, asr_pb2_grpc

SAMPLE_RATE = 16000


@dataclasses.dataclass
class Received:
    at: float                 # perf_counter when it arrived
    sent_ms: int              # audio of the current utterance sent by then
    response: asr_pb2.RecognizeResponse


@dataclasses.dataclass
class StreamRecord:
    received: list[Received] = dataclasses.field(default_factory=list)
    last_chunk_at: list[float] = dataclasses.field(default_factory=list)   # per utterance
    eou_at: list[float] = dataclasses.field(default_factory=list)          # per utterance

    @property
    def finals(self) -> list[asr_pb2.RecognizeResponse]:
        return [r.response for r in self.received if r.response.is_final]

    def interims(self, utterance: int = 0) -> list[Received]:
        return [r for r in self.received
                if not r.response.is_final and r.response.utterance_index == utterance]

    def eou_to_final(self) -> list[float]:
        finals = [r for r in self.received if r.response.is_final]
        return [f.at - e for f, e in zip(finals, self.eou_at)]


def chunks(pcm: bytes, chunk_ms: int) -> list[bytes]:
    step = SAMPLE_RATE * chunk_ms // 1000 * 2
    return [pcm[i:i + step] for i in range(0, len(pcm), step)]


async def recognize(address: str, utterances: Sequence[bytes], *,
                    config: asr_pb2.RecognitionConfig | None = None, chunk_ms: int = 20,
                    realtime: bool = False, force_eou: bool = True,
                    timeout: float = 120.0) -> StreamRecord:
    """Stream ``utterances`` (PCM16 16 kHz) on one stream, force_eou after each
    (unless ``force_eou`` is False: then the half-close ends the last one)."""
    config = config or asr_pb2.RecognitionConfig(language="en", interim_results=True,
                                                 sample_rate_hz=SAMPLE_RATE)
    record = StreamRecord()
    sent_ms = 0

    async def requests() -> AsyncIterator[asr_pb2.RecognizeRequest]:
        nonlocal sent_ms
        yield asr_pb2.RecognizeRequest(config=config)
        for n, pcm in enumerate(utterances):
            sent_ms = 0
            start = time.perf_counter()
            for chunk in chunks(pcm, chunk_ms):
                if realtime:   # pace by the audio clock, not by sleep drift
                    delay = start + sent_ms / 1000 - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                yield asr_pb2.RecognizeRequest(audio=chunk)
                sent_ms += len(chunk) * 1000 // (2 * SAMPLE_RATE)
            record.last_chunk_at.append(time.perf_counter())
            if force_eou or n < len(utterances) - 1:
                record.eou_at.append(time.perf_counter())
                yield asr_pb2.RecognizeRequest(control=asr_pb2.Control(force_eou=True))
        if not force_eou:
            record.eou_at.append(time.perf_counter())   # the half-close ends the last one

    async with grpc.aio.insecure_channel(address) as channel:
        stub = asr_pb2_grpc.RecognizerStub(channel)
        call = stub.StreamingRecognize(requests(), timeout=timeout)
        async for resp in call:
            record.received.append(Received(time.perf_counter(), sent_ms, resp))
    return record


async def status(address: str):
    async with grpc.aio.insecure_channel(address) as channel:
        from common.stubs import common_pb2

        return await asr_pb2_grpc.RecognizerStub(channel).GetStatus(common_pb2.StatusRequest())
