"""gRPC Retriever servicer: a thin layer over RagEngine; searches and
rebuilds run in worker threads so the event loop never waits on the model."""
from __future__ import annotations

import asyncio
import time

import grpc

from common.status import StreamStats, status_to_pb
from common.stubs import rag_pb2_grpc
from services.rag import convert
from services.rag import metrics as rag_metrics
from services.rag.schema import InvalidRequest


class RetrieverServicer(rag_pb2_grpc.RetrieverServicer):
    def __init__(self, engine, stats: StreamStats) -> None:
        self.engine = engine   # RagEngine (or the loading proxy until it is ready)
        self.stats = stats

    async def Search(self, request, context: grpc.aio.ServicerContext):
        async with self.stats.track():
            req = convert.search_from_pb(request)
            t0 = time.perf_counter()
            try:
                hits = await asyncio.to_thread(self.engine.search, req)
            except InvalidRequest as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            seconds = time.perf_counter() - t0
            rag_metrics.record(seconds, hits)
            return convert.hits_to_pb(hits, seconds * 1000.0)

    async def Reindex(self, request, context: grpc.aio.ServicerContext):
        async with self.stats.track():
            result = await asyncio.to_thread(self.engine.reindex)
            return convert.reindex_to_pb(result)

    async def GetStatus(self, request, context: grpc.aio.ServicerContext):
        return status_to_pb(self.stats)
