"""gRPC Chat servicer: a thin layer over LlmEngine. Maps engine errors to
status codes; client cancellation arrives as CancelledError in the stream and
reaches the engine by closing its generator."""
from __future__ import annotations

import logging

import grpc

from common.status import StreamStats, status_to_pb
from common.stubs import llm_pb2_grpc
from services.llm import convert
from services.llm.schema import Busy, GenerateDone, InvalidRequest

log = logging.getLogger(__name__)


class ChatServicer(llm_pb2_grpc.ChatServicer):
    def __init__(self, engine, stats: StreamStats) -> None:
        self.engine = engine   # LlmEngine (or the loading proxy until it is ready)
        self.stats = stats

    async def Generate(self, request, context: grpc.aio.ServicerContext):
        async with self.stats.track():
            try:
                req = convert.request_from_pb(request)
                gen = self.engine.generate(req)
                try:
                    async for ev in gen:
                        yield convert.event_to_pb(ev)
                        if isinstance(ev, GenerateDone):
                            break
                finally:
                    await gen.aclose()
            except InvalidRequest as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            except Busy as exc:
                await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
            except (RuntimeError, OSError, ValueError) as exc:
                # A model failure ends this stream only; the instance went back to the pool.
                log.exception("request %s: generation failed", request.request_id or "-")
                await context.abort(grpc.StatusCode.INTERNAL, f"generation failed: {exc}")

    async def GetStatus(self, request, context: grpc.aio.ServicerContext):
        return status_to_pb(self.stats)
