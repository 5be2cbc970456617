"""A tiny real grpc.aio server with the project's interceptors over a fake
servicer (raw bytes, no protos), for testing RED metrics and tracing without
a model: Echo (unary), Count (server stream until cancelled), both able to
fail with a chosen status."""
from __future__ import annotations

import asyncio
import contextlib
from typing import AsyncIterator

import grpc

from common.metrics import MetricsInterceptor
from common.tracing import TracingInterceptor, current_trace_id

SERVICE = "fake.v1.Fake"


class FakeServicer:
    """Remembers what it saw, so tests can assert on the server's side."""

    def __init__(self) -> None:
        self.trace_ids: list[str | None] = []
        self.cleaned_up = asyncio.Event()
        self.streaming = asyncio.Event()

    async def echo(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        self.trace_ids.append(current_trace_id())
        if request == b"invalid":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "request was 'invalid'")
        return request

    async def count(self, request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        self.trace_ids.append(current_trace_id())
        try:
            i = 0
            while True:
                if request == b"fail" and i == 2:
                    await context.abort(grpc.StatusCode.INTERNAL, "engine failed")
                if request == b"finite" and i == 3:
                    return
                yield str(i).encode()
                self.streaming.set()
                i += 1
                await asyncio.sleep(0.01)
        finally:
            self.cleaned_up.set()


@contextlib.asynccontextmanager
async def fake_server(service_label: str = "fake") -> AsyncIterator[tuple[str, FakeServicer]]:
    """Yields (address, servicer) of a started server; stops it on exit."""
    servicer = FakeServicer()
    handlers = grpc.method_handlers_generic_handler(SERVICE, {
        "Echo": grpc.unary_unary_rpc_method_handler(servicer.echo),
        "Count": grpc.unary_stream_rpc_method_handler(servicer.count),
    })
    server = grpc.aio.server(interceptors=[TracingInterceptor(service_label), MetricsInterceptor()])
    server.add_generic_rpc_handlers((handlers,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}", servicer
    finally:
        await server.stop(0)
