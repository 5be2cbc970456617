"""Invariant: a turn is one trace across gRPC. The trace context the client
puts in metadata becomes the parent of the server's span and is current
inside the servicer; a server stream's span ends however the stream ends,
and a client cancellation (barge-in) is not marked as an error."""
from __future__ import annotations

import asyncio

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from common.tracing import client_interceptors, current_trace_id, inject_metadata
from tests.observability.fake_grpc import SERVICE, fake_server

_EXPORTER = InMemorySpanExporter()


def _install_provider() -> None:
    """The global provider can be set once per process; reuse an SDK one if
    another test already installed it."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
        provider = trace.get_tracer_provider()
    provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))


_install_provider()


@pytest.fixture
def spans() -> InMemorySpanExporter:
    _EXPORTER.clear()
    return _EXPORTER


async def _wait_for_span(exporter: InMemorySpanExporter, name: str) -> trace.Span:
    for _ in range(200):
        found = [s for s in exporter.get_finished_spans() if s.name == name]
        if found:
            return found[0]
        await asyncio.sleep(0.01)
    raise AssertionError(f"span {name} never ended; have {[s.name for s in exporter.get_finished_spans()]}")


async def test_context_propagates_from_client_metadata_to_servicer(spans):
    async with fake_server() as (addr, servicer):
        async with grpc.aio.insecure_channel(addr) as ch:
            with trace.get_tracer("test").start_as_current_span("turn") as turn:
                turn_trace = current_trace_id()
                await ch.unary_unary(f"/{SERVICE}/Echo")(b"x", metadata=inject_metadata())
                items = [i async for i in ch.unary_stream(f"/{SERVICE}/Count")(b"finite", metadata=inject_metadata())]
    assert items == [b"0", b"1", b"2"]
    assert servicer.trace_ids == [turn_trace, turn_trace]
    for name in (f"{SERVICE}/Echo", f"{SERVICE}/Count"):
        span = await _wait_for_span(spans, name)
        assert span.kind == SpanKind.SERVER
        assert span.parent is not None and span.parent.span_id == turn.get_span_context().span_id
        assert format(span.context.trace_id, "032x") == turn_trace
        assert span.status.status_code == StatusCode.UNSET
        assert span.attributes["rpc.grpc.status_code"] == 0
    # The servicer's context did not leak into the caller's.
    assert current_trace_id() is None


async def test_cancelled_stream_ends_its_span_without_error(spans):
    async with fake_server() as (addr, servicer):
        async with grpc.aio.insecure_channel(addr) as ch:
            with trace.get_tracer("test").start_as_current_span("turn"):
                call = ch.unary_stream(f"/{SERVICE}/Count")(b"", metadata=inject_metadata())
            await call.read()
            call.cancel()
            await asyncio.wait_for(servicer.cleaned_up.wait(), 5)
            span = await _wait_for_span(spans, f"{SERVICE}/Count")
    assert span.attributes["rpc.cancelled"] is True
    assert span.status.status_code != StatusCode.ERROR
    assert span.end_time is not None


async def test_failed_stream_marks_span_as_error(spans):
    async with fake_server() as (addr, _):
        async with grpc.aio.insecure_channel(addr) as ch:
            with pytest.raises(grpc.aio.AioRpcError):
                async for _ in ch.unary_stream(f"/{SERVICE}/Count")(b"fail"):
                    pass
    span = await _wait_for_span(spans, f"{SERVICE}/Count")
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.INTERNAL.value[0]


async def test_client_interceptors_add_a_client_span_parenting_the_server_span(spans):
    async with fake_server() as (addr, servicer):
        async with grpc.aio.insecure_channel(addr, interceptors=client_interceptors()) as ch:
            with trace.get_tracer("test").start_as_current_span("turn") as turn:
                await ch.unary_unary(f"/{SERVICE}/Echo")(b"x")
    name = f"{SERVICE}/Echo"
    for _ in range(200):
        both = [s for s in spans.get_finished_spans() if s.name == name]
        if len(both) == 2:
            break
        await asyncio.sleep(0.01)
    client = next(s for s in both if s.kind == SpanKind.CLIENT)
    server = next(s for s in both if s.kind == SpanKind.SERVER)
    assert client.parent.span_id == turn.get_span_context().span_id
    assert server.parent.span_id == client.context.span_id
    assert servicer.trace_ids == [format(turn.get_span_context().trace_id, "032x")]
