"""Prometheus metrics shared by every service: RED per RPC, in-flight streams,
model load time. Every series carries service, model and variant labels, so a
canary can be compared with stable on the same panels.

Service-specific figures (ASR real-time factor, LLM time to first token, ...)
are declared next to the service with ``histogram``/``counter``/``gauge`` from
here, so they share labels and buckets.

Latency observations made inside a traced turn carry the trace id as an
exemplar (``observe_with_trace``); exemplars only exist in the OpenMetrics
text format, which /metrics serves when the scraper asks for it (Prometheus
does), so a slow point on a graph links to its trace."""
from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

import grpc
from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server
from prometheus_client.exposition import choose_encoder

# Voice latencies live between tens of milliseconds and a few seconds.
VOICE_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.65, 0.8,
                 1.0, 1.2, 1.5, 2.0, 3.0, 5.0, 10.0)
RATIO_BUCKETS = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 4.0)
BASE_LABELS = ("service", "model", "variant")


class _Base:
    service = "unknown"
    model = "unknown"
    variant = "stable"


def init(service: str, model: str, variant: str, *, serves_model: bool = True) -> None:
    """Set the labels every series of this process carries; call once at start.

    A model server's ``voice_model_loaded`` starts at 0 here, so a model that
    never finishes loading shows up as a 0 (the VoiceModelNotLoaded alert), not
    as nothing. A process that loads no model (the gateway) passes
    ``serves_model=False`` and exports no such series: a 0 that nothing ever
    sets to 1 would page on a healthy system."""
    _Base.service, _Base.model, _Base.variant = service, model, variant
    if serves_model:
        MODEL_LOADED.labels(**base()).set(0)


def base() -> dict[str, str]:
    return {"service": _Base.service, "model": _Base.model, "variant": _Base.variant}


def set_model(model: str) -> None:
    """Relabel the process with the model it actually loaded."""
    old = base()
    _Base.model = model
    if old["model"] != model:
        # Carry the loaded flag over so no stale series with the old model stays behind.
        try:
            value = MODEL_LOADED.labels(**old)._value.get()
            MODEL_LOADED.remove(*old.values())
        except KeyError:
            return
        MODEL_LOADED.labels(**base()).set(value)


def set_capacity(max_streams: int) -> None:
    """Export the stream limit, so saturation is in-flight / capacity."""
    STREAM_CAPACITY.labels(**base()).set(max_streams)


def observe_with_trace(hist_labels: Any, value: float) -> None:
    """``hist_labels.observe(value)`` with the current trace id as exemplar.

    ``hist_labels`` is a labelled histogram child (``HIST.labels(**base(), ...)``).
    Outside a sampled span it is a plain observation."""
    from common.tracing import current_trace_id  # tracing imports nothing from here

    trace_id = current_trace_id()
    if trace_id:
        hist_labels.observe(value, exemplar={"trace_id": trace_id})
    else:
        hist_labels.observe(value)


def exposition(accept_header: str | None) -> tuple[bytes, str]:
    """(body, content type) for a /metrics response: OpenMetrics (with
    exemplars) when the scraper accepts it, the classic text format otherwise.
    The gateway's HTTP app uses this; the side port server negotiates alike."""
    encoder, content_type = choose_encoder(accept_header or "")
    return encoder(REGISTRY), content_type


def histogram(name: str, doc: str, labels: tuple[str, ...] = (), buckets=VOICE_BUCKETS) -> Histogram:
    return Histogram(name, doc, BASE_LABELS + labels, buckets=buckets)


def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
    return Counter(name, doc, BASE_LABELS + labels)


def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
    return Gauge(name, doc, BASE_LABELS + labels)


RPC_REQUESTS = counter("voice_rpc_requests_total", "RPCs started", ("method",))
RPC_ERRORS = counter("voice_rpc_errors_total",
                     "RPCs that ended in an error (client cancellation is not an error)",
                     ("method", "code"))
RPC_CANCELLED = counter("voice_rpc_cancelled_total", "RPCs cancelled by the client (barge-in)",
                        ("method",))
RPC_DURATION = histogram("voice_rpc_duration_seconds", "RPC duration, start to end",
                         ("method", "code"), buckets=VOICE_BUCKETS + (30.0, 60.0))
RPC_IN_FLIGHT = gauge("voice_rpc_in_flight", "RPCs (streams) being served now", ("method",))
MODEL_LOAD_SECONDS = gauge("voice_model_load_seconds", "Time the model took to load")
MODEL_LOADED = gauge("voice_model_loaded", "1 once the model is loaded and serving, else 0")
STREAM_CAPACITY = gauge("voice_stream_capacity", "Streams this process serves at once (max_streams)")


def start_metrics_server(port: int, host: str = "0.0.0.0") -> None:
    """Serve /metrics on a side port (0 = off). prometheus_client's server
    picks OpenMetrics from the Accept header, so exemplars reach Prometheus."""
    if port:
        start_http_server(port, addr=host, registry=REGISTRY)


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Counts every RPC, its duration, its status code and in-flight streams."""

    async def intercept_service(self, continuation: Callable, details: grpc.HandlerCallDetails) -> Any:
        handler = await continuation(details)
        if handler is None or details.method.startswith("/grpc.health"):
            return handler
        method = details.method.rsplit("/", 1)[-1]
        if handler.unary_unary:
            return handler._replace(unary_unary=_wrap_unary(handler.unary_unary, method))
        if handler.unary_stream:
            return handler._replace(unary_stream=_wrap_stream(handler.unary_stream, method))
        if handler.stream_unary:
            return handler._replace(stream_unary=_wrap_unary(handler.stream_unary, method))
        if handler.stream_stream:
            return handler._replace(stream_stream=_wrap_stream(handler.stream_stream, method))
        return handler


class _Tracker:
    def __init__(self, method: str) -> None:
        self.method = method
        self.t0 = time.perf_counter()
        b = base()
        RPC_REQUESTS.labels(**b, method=method).inc()
        RPC_IN_FLIGHT.labels(**b, method=method).inc()

    def finish(self, code: grpc.StatusCode | None) -> None:
        b = base()
        RPC_IN_FLIGHT.labels(**b, method=self.method).dec()
        name = (code or grpc.StatusCode.OK).name
        RPC_DURATION.labels(**b, method=self.method, code=name).observe(time.perf_counter() - self.t0)
        if code == grpc.StatusCode.CANCELLED:
            RPC_CANCELLED.labels(**b, method=self.method).inc()
        elif code not in (None, grpc.StatusCode.OK):
            RPC_ERRORS.labels(**b, method=self.method, code=name).inc()


def grpc_status(context: Any, exc: BaseException | None) -> grpc.StatusCode | None:
    """The status the RPC ended with. A client that hung up (barge-in) shows
    as CancelledError/GeneratorExit in the handler or as a cancelled context,
    even when the servicer swallowed it and returned normally."""
    if isinstance(exc, (asyncio.CancelledError, GeneratorExit)):
        return grpc.StatusCode.CANCELLED
    try:
        if context.cancelled():
            return grpc.StatusCode.CANCELLED
    except Exception:  # a context without cancelled() (tests' fakes)
        pass
    try:
        code = context.code()
    except Exception:  # older grpc without ServicerContext.code()
        code = None
    if code is not None:
        return code
    if exc is not None:
        return grpc.StatusCode.UNKNOWN
    return grpc.StatusCode.OK


_code_of = grpc_status  # the name this had before tracing shared it


def _wrap_unary(fn: Callable, method: str) -> Callable:
    async def wrapper(request: Any, context: Any) -> Any:
        t = _Tracker(method)
        exc: BaseException | None = None
        try:
            return await fn(request, context)
        except BaseException as e:
            exc = e
            raise
        finally:
            t.finish(grpc_status(context, exc))
    return wrapper


def _wrap_stream(fn: Callable, method: str) -> Callable:
    async def wrapper(request: Any, context: Any) -> Any:
        t = _Tracker(method)
        inner = fn(request, context)
        exc: BaseException | None = None
        try:
            async for item in inner:
                yield item
        except BaseException as e:
            exc = e
            raise
        finally:
            try:
                # Closed by grpc (GeneratorExit at our yield): close the
                # servicer's generator now so its cleanup runs, not at GC time.
                await inner.aclose()
            finally:
                t.finish(grpc_status(context, exc))
    return wrapper
