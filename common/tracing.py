"""OpenTelemetry tracing across gRPC: W3C trace context travels in gRPC
metadata; the exporter is a setting (OTLP endpoint, or off).

Client side: ``inject_metadata()`` (or the ``client_interceptors()`` for a
channel) puts the current context into the call's metadata. Server side:
``TracingInterceptor`` opens one SERVER span per RPC parented on it. Spans are
per RPC and per stage, never per audio frame.

A streaming RPC's span ends however the stream ends: completed, failed,
or cancelled by the client (barge-in). Cancellation is not an error: the span
keeps an unset status and gets ``rpc.cancelled = true``."""
from __future__ import annotations

import logging
import time
from typing import Any, AsyncIterator, Callable, Iterable

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Status, StatusCode

# metrics imports tracing only inside observe_with_trace, so no import cycle.
from common.metrics import grpc_status

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

    # The provider flushes its batch at interpreter exit (serve() returns after
    # the SIGTERM drain), so the last turn's spans are not lost on shutdown.
    provider = TracerProvider(resource=Resource.create(
        {"service.name": service, "deployment.environment.variant": variant}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint, insecure=True)))
    trace.set_tracer_provider(provider)
    _configured = True
    log.info("tracing to %s", otlp_endpoint)


def flush(timeout_s: float = 5.0) -> bool:
    """Export buffered spans now (tests, and before a deliberate exit)."""
    provider = trace.get_tracer_provider()
    force = getattr(provider, "force_flush", None)
    return bool(force(int(timeout_s * 1000))) if callable(force) else True


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


def _end(span: trace.Span, code: grpc.StatusCode | None) -> None:
    code = code or grpc.StatusCode.OK
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if code == grpc.StatusCode.CANCELLED:
        span.set_attribute("rpc.cancelled", True)
    elif code != grpc.StatusCode.OK:
        span.set_status(Status(StatusCode.ERROR, code.name))
    span.end()


def _span_name(method: str) -> str:
    return method.lstrip("/")


def _rpc_attributes(method: str) -> dict[str, str]:
    service, _, name = method.lstrip("/").rpartition("/")
    return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}


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
        name, attrs = _span_name(details.method), _rpc_attributes(details.method)
        tr = self._tracer

        def wrap_unary(fn: Callable) -> Callable:
            async def w(req: Any, ctx: Any) -> Any:
                span = tr.start_span(name, context=parent, kind=trace.SpanKind.SERVER, attributes=attrs)
                token = otel_context.attach(trace.set_span_in_context(span, parent))
                exc: BaseException | None = None
                try:
                    return await fn(req, ctx)
                except BaseException as e:
                    exc = e
                    raise
                finally:
                    otel_context.detach(token)
                    _end(span, grpc_status(ctx, exc))
            return w

        def wrap_stream(fn: Callable) -> Callable:
            async def w(req: Any, ctx: Any) -> AsyncIterator[Any]:
                span = tr.start_span(name, context=parent, kind=trace.SpanKind.SERVER, attributes=attrs)
                span_ctx = trace.set_span_in_context(span, parent)
                inner = fn(req, ctx)
                exc: BaseException | None = None
                try:
                    while True:
                        # The span is current only while the servicer runs, not
                        # while grpc holds our yielded item: attaching across a
                        # yield would leak it into (or detach it from) another
                        # context when the stream is cancelled.
                        token = otel_context.attach(span_ctx)
                        try:
                            item = await inner.__anext__()
                        except StopAsyncIteration:
                            break
                        finally:
                            otel_context.detach(token)
                        yield item
                except BaseException as e:
                    exc = e
                    raise
                finally:
                    try:
                        # Runs the servicer's own finally blocks (cleanup on cancel).
                        await inner.aclose()
                    finally:
                        _end(span, grpc_status(ctx, exc))
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


class _ClientTracing:
    """CLIENT span per call, context injected into its metadata; the span
    ends when the call is done (completed, failed or cancelled)."""

    def _start(self, details: grpc.aio.ClientCallDetails) -> tuple[trace.Span, grpc.aio.ClientCallDetails]:
        method = details.method.decode() if isinstance(details.method, bytes) else details.method
        span = tracer("voice.client").start_span(_span_name(method), kind=trace.SpanKind.CLIENT,
                                                  attributes=_rpc_attributes(method))
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        metadata = list(details.metadata or ()) + list(carrier.items())
        return span, details._replace(metadata=grpc.aio.Metadata(*metadata))

    @staticmethod
    def _end_when_done(span: trace.Span, call: Any) -> Any:
        def done(c: Any) -> None:
            if c.cancelled():
                span.set_attribute("rpc.cancelled", True)
            span.end()
        call.add_done_callback(done)
        return call


class _UnaryUnary(_ClientTracing, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation, details, request):
        span, details = self._start(details)
        return self._end_when_done(span, await continuation(details, request))


class _UnaryStream(_ClientTracing, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation, details, request):
        span, details = self._start(details)
        return self._end_when_done(span, await continuation(details, request))


class _StreamUnary(_ClientTracing, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation, details, request_iterator):
        span, details = self._start(details)
        return self._end_when_done(span, await continuation(details, request_iterator))


class _StreamStream(_ClientTracing, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation, details, request_iterator):
        span, details = self._start(details)
        return self._end_when_done(span, await continuation(details, request_iterator))


def client_interceptors() -> list[grpc.aio.ClientInterceptor]:
    """``grpc.aio.insecure_channel(addr, interceptors=client_interceptors())``:
    every call on the channel gets a CLIENT span and carries its context."""
    return [_UnaryUnary(), _UnaryStream(), _StreamUnary(), _StreamStream()]


def traceparent() -> dict[str, str]:
    """The current span's W3C context as {"traceparent": …, "tracestate": …}
    (empty when tracing is off), for an in-band TraceContext message."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def new_root_span(tracer_name: str, name: str, attributes: dict[str, Any] | None = None) -> trace.Span:
    """A span that starts a new trace (a user turn), whatever is current."""
    return tracer(tracer_name).start_span(name, context=otel_context.Context(), attributes=attributes)


def traceparent_of(span: trace.Span) -> dict[str, str]:
    """``span``'s W3C context as a carrier dict (empty when tracing is off)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span))
    return carrier


class StretchSpans:
    """One span per stretch of a long-lived stream (a VAD speech segment, an
    ASR utterance), never per audio frame. The parent is the trace context the
    client last sent in-band (the user turn); without one, the stream's own
    server span.

    The span is created when the stretch ends, with the start time recorded
    when it began: the VAD decides that speech started before the client can
    answer with the new turn's context, and the context that arrived by the
    end is the one the stretch belongs to."""

    def __init__(self, tracer_name: str, span_name: str) -> None:
        self._tracer = tracer(tracer_name)
        self._name = span_name
        self._parent: Any = None
        self._started_ns: int | None = None
        self._attributes: dict[str, Any] = {}

    def set_parent(self, traceparent_: str, tracestate: str = "") -> None:
        carrier = {"traceparent": traceparent_} | ({"tracestate": tracestate} if tracestate else {})
        self._parent = propagate.extract(carrier)

    def start(self, **attributes: Any) -> None:
        if self._started_ns is None:
            self._started_ns = time.time_ns()
            self._attributes = dict(attributes)

    def end(self, **attributes: Any) -> None:
        if self._started_ns is None:
            return
        span = self._tracer.start_span(self._name, context=self._parent, start_time=self._started_ns,
                                       attributes=self._attributes | attributes)
        span.end()
        self._started_ns, self._attributes = None, {}
