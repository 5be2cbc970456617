"""gRPC face of the TTS: validate, then stream the engine's audio pieces.
A client cancel closes the engine's iterator, which stops the synthesis."""
from __future__ import annotations

import logging
import threading
import time
from typing import AsyncIterator

import grpc

from common import metrics as common_metrics
from common.status import StreamStats, status_to_pb
from common.stubs import common_pb2, tts_pb2, tts_pb2_grpc
from services.tts import convert
from services.tts import metrics as m
from services.tts.engine import SynthesisReport, TtsEngine

log = logging.getLogger(__name__)


class TtsServicer(tts_pb2_grpc.SynthesizerServicer):
    def __init__(self, engine: TtsEngine, model_label: str, max_streams: int) -> None:
        self.engine = engine
        self.max_streams = max_streams
        self.stats = StreamStats("tts", model_label)

    async def Synthesize(self, request: tts_pb2.SynthesizeRequest,
                         context: grpc.aio.ServicerContext) -> AsyncIterator[tts_pb2.AudioChunk]:
        t0 = time.perf_counter()
        if self.stats.active >= self.max_streams:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"TTS is serving {self.stats.active} streams, its limit (TTS_MAX_STREAMS)")
        report = SynthesisReport()
        b = common_metrics.base()
        async with self.stats.track():
            try:
                job = self.engine.prepare(convert.request_from_pb(request))
            except ValueError as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            # The done callback stops the worker as soon as grpc sees the cancel,
            # even while this generator is suspended at a yield (grpc then
            # closes it only later, with GeneratorExit).
            cancel = threading.Event()
            context.add_done_callback(lambda _ctx: cancel.set())
            first = True
            try:
                async for piece in self.engine.stream(job, report, cancel):
                    if first and piece.audio:
                        m.TTFA.labels(**b).observe(time.perf_counter() - t0)
                        first = False
                    yield convert.piece_to_pb(piece)
            finally:
                m.CHARACTERS.labels(**b).inc(report.characters)
                if report.audio_seconds > 0:
                    m.RTF.labels(**b).observe(report.synth_seconds / report.audio_seconds)

    async def ListVoices(self, request: tts_pb2.ListVoicesRequest,
                         context: grpc.aio.ServicerContext) -> tts_pb2.ListVoicesResponse:
        return convert.voices_to_pb(self.engine.list_voices(), self.engine.default_voice)

    async def GetStatus(self, request: common_pb2.StatusRequest,
                        context: grpc.aio.ServicerContext) -> common_pb2.ServiceStatus:
        return status_to_pb(self.stats)
