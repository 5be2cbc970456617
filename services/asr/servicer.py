"""grpc.aio servicer for voice.v1.Recognizer: a thin layer that converts
messages and maps errors to status codes; the protocol lives in session.py."""
from __future__ import annotations

import logging
from typing import AsyncIterator

import grpc

from common.status import StreamStats, status_to_pb
from common.tracing import StretchSpans
from common.stubs import asr_pb2, asr_pb2_grpc, common_pb2
from services.asr.convert import events_from_pb, result_to_pb
from services.asr.engine import Transcriber
from services.asr.batching import InterimBatcher
from services.asr.interims import InterimScheduler
from services.asr.metrics import PrometheusObserver
from services.asr.results import InvalidRequest
from services.asr.session import RecognitionSession, SessionLimits

log = logging.getLogger(__name__)


class RecognizerServicer(asr_pb2_grpc.RecognizerServicer):
    def __init__(self, engine: Transcriber, limits: SessionLimits, model_label: str,
                 max_streams: int, interims: InterimScheduler | None = None,
                 batcher: InterimBatcher | None = None) -> None:
        self.engine, self.limits, self.max_streams = engine, limits, max_streams
        self.stats = StreamStats(service="asr", model=model_label)
        self.observer = PrometheusObserver()
        # One scheduler for every stream of the process: interims take turns across streams.
        self.interims = interims or InterimScheduler(1, observer=self.observer)
        # Streams the scheduler grants one pass together are decoded as one batch.
        self.batcher = batcher

    async def StreamingRecognize(self, request_iterator: AsyncIterator[asr_pb2.RecognizeRequest],
                                 context: grpc.aio.ServicerContext
                                 ) -> AsyncIterator[asr_pb2.RecognizeResponse]:
        if self.stats.active >= self.max_streams:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"ASR is serving its maximum of {self.max_streams} streams; retry later")
        async with self.stats.track():
            session = RecognitionSession(self.engine, self.limits, self.observer,
                                         interims=self.interims, batcher=self.batcher)
            spans = StretchSpans("asr", "asr.utterance")   # one span per utterance, per turn trace
            try:
                async for result in session.run(events_from_pb(_traced(request_iterator, spans))):
                    if result.is_final:
                        spans.end(**{"asr.utterance_index": result.utterance_index,
                                     "asr.words": len(result.words)})
                    yield result_to_pb(result)
            except InvalidRequest as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            except grpc.aio.AbortError:
                raise
            except Exception as exc:  # an engine failure: this stream fails, others go on
                log.exception("recognition stream failed")
                await context.abort(grpc.StatusCode.INTERNAL, f"recognition failed: {exc}")
            finally:
                spans.end()

    async def GetStatus(self, request: common_pb2.StatusRequest,
                        context: grpc.aio.ServicerContext) -> common_pb2.ServiceStatus:
        return status_to_pb(self.stats)


async def _traced(requests: AsyncIterator[asr_pb2.RecognizeRequest],
                  spans: StretchSpans) -> AsyncIterator[asr_pb2.RecognizeRequest]:
    """Take the in-band trace context out of the stream; an utterance's span
    starts with its first audio and ends with its final."""
    async for req in requests:
        kind = req.WhichOneof("request")
        if kind == "trace":
            spans.set_parent(req.trace.traceparent, req.trace.tracestate)
            continue
        if kind == "audio":
            spans.start()
        yield req
