"""OpenTelemetry tracing across gRPC: W3C trace context travels in gRPC
metadata; the exporter is a setting (OTLP endpoint, or off)."""
from __future__ import annotations

import logging
from typing import Any, Callable, Iterable

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

log = logging.getLogger(__name__)
_configured = False


def setup_tracing(service: str, otlp_endpoint: str, variant: str = "stable") -> None:
    """Install a tracer provider exporting to ``otlp_endpoint``; no-op when empty."""
    global _configured
    if _configured or not otlp_endpoint:
        return
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create(
        {"service.name": service, "deployment.environment.variant": variant}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint, insecure=True)))
    trace.set_tracer_provider(provider)
    _configured = True
    log.info("tracing to %s", otlp_endpoint)


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)


def inject_metadata(extra: Iterable[tuple[str, str]] = ()) -> list[tuple[str, str]]:
    """gRPC metadata carrying the current trace context (for client calls)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return list(extra) + list(carrier.items())


def current_trace_id() -> str | None:
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


class TracingInterceptor(grpc.aio.ServerInterceptor):
    """Opens a server span per RPC, parented on the caller's trace context."""

    def __init__(self, service: str) -> None:
        self._tracer = tracer(service)

    async def intercept_service(self, continuation: Callable, details: grpc.HandlerCallDetails) -> Any:
        handler = await continuation(details)
        if handler is None or details.method.startswith("/grpc.health"):
            return handler
        carrier = {k: v for k, v in (details.invocation_metadata or ()) if isinstance(v, str)}
        parent = propagate.extract(carrier)
        name = details.method.lstrip("/")
        tr = self._tracer

        def wrap_unary(fn: Callable) -> Callable:
            async def w(req: Any, ctx: Any) -> Any:
                token = otel_context.attach(parent)
                try:
                    with tr.start_as_current_span(name, kind=trace.SpanKind.SERVER):
                        return await fn(req, ctx)
                finally:
                    otel_context.detach(token)
            return w

        def wrap_stream(fn: Callable) -> Callable:
            async def w(req: Any, ctx: Any) -> Any:
                token = otel_context.attach(parent)
                try:
                    with tr.start_as_current_span(name, kind=trace.SpanKind.SERVER):
                        async for item in fn(req, ctx):
                            yield item
                finally:
                    try:
                        otel_context.detach(token)
                    except Exception:  # detached from another context on cancel
                        pass
            return w

        if handler.unary_unary:
            return handler._replace(unary_unary=wrap_unary(handler.unary_unary))
        if handler.stream_unary:
            return handler._replace(stream_unary=wrap_unary(handler.stream_unary))
        if handler.unary_stream:
            return handler._replace(unary_stream=wrap_stream(handler.unary_stream))
        if handler.stream_stream:
            return handler._replace(stream_stream=wrap_stream(handler.stream_stream))
        return handler
