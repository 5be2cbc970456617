"""gRPC server bootstrap shared by every speech service.

Order matters: the port opens and health answers NOT_SERVING at once (so a
supervisor can tell "loading" from "dead"), the model loads in a thread, then
health flips to SERVING. SIGTERM flips it back to NOT_SERVING and drains
in-flight streams for ``drain_seconds`` before exiting.

Connections are kept honest (``server_options``): keepalive pings find a
client that vanished without closing its socket, and ``max_connection_age``
sends each connection a GOAWAY after a while, so clients open a new one and
new calls spread over replicas added since (a long-lived channel otherwise
stays on the replica it first reached). Calls already running on the old
connection finish: there is no grace limit, a session's ASR stream is not
cut mid-utterance."""
from __future__ import annotations

import asyncio
import logging
import signal
import time
from typing import Any, Callable, Coroutine

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from common import metrics
from common.config import ServiceSettings, log_settings, setup_logging
from common.tracing import TracingInterceptor, setup_tracing

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 4 * 1024 * 1024
# The gateway pings every 10 s (services/gateway/backends/deadlines.py); a
# ping more often than min_recv_ping_interval is a strike. Strikes never
# close the connection (max_ping_strikes 0 = no limit): a GOAWAY
# "too_many_pings" still came, in CI, ~30 s into a session whose client
# pinged every 10 s (flow-control probes are pings too: grpc/grpc#22996), and
# it cut the session's ASR stream, losing the utterance in flight. Only the
# gateway reaches these services; dead peers are found by keepalive.
KEEPALIVE_TIME_MS = 20_000
KEEPALIVE_TIMEOUT_MS = 10_000
MIN_CLIENT_PING_INTERVAL_MS = 5_000


def server_options(settings: ServiceSettings) -> list[tuple[str, int]]:
    """The gRPC server's channel arguments (message sizes, keepalive, connection age)."""
    opts = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
            ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_recv_ping_interval_without_data_ms", MIN_CLIENT_PING_INTERVAL_MS),
            ("grpc.http2.max_ping_strikes", 0)]
    if settings.max_connection_age_s > 0:
        opts.append(("grpc.max_connection_age_ms", int(settings.max_connection_age_s * 1000)))
    return opts


async def serve(
    name: str,
    service_names: list[str],
    settings: ServiceSettings,
    model_label: str,
    load: Callable[[], Any],
    add_servicers: Callable[[grpc.aio.Server, Any], None],
    ready: asyncio.Event | None = None,
) -> None:
    """Run one service until SIGTERM/SIGINT.

    ``load`` runs in a worker thread and returns the loaded engine;
    ``add_servicers(server, engine)`` registers the servicers on the server."""
    setup_logging(settings.log_level, name)
    log_settings(name, settings)
    metrics.init(name, model_label, settings.variant)
    metrics.set_capacity(settings.max_streams)
    setup_tracing(name, settings.otlp_endpoint, settings.variant)
    metrics.start_metrics_server(settings.metrics_port)

    server = grpc.aio.server(
        interceptors=[TracingInterceptor(name), metrics.MetricsInterceptor()],
        options=server_options(settings),
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for svc in ["", *service_names]:
        await health_servicer.set(svc, health_pb2.HealthCheckResponse.NOT_SERVING)
    address = f"{settings.host}:{settings.port}"
    bound = server.add_insecure_port(address)
    if not bound:
        raise SystemExit(f"{name}: cannot listen on {address}")

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    # Servicers are registered before start (grpc requires it); they answer
    # UNAVAILABLE-free only after load because health gates traffic.
    t0 = time.perf_counter()
    holder: dict[str, Any] = {}

    class _Lazy:
        """Lets servicers be registered before the engine exists."""

        def __getattr__(self, item: str) -> Any:
            if "engine" not in holder:
                raise RuntimeError("model still loading")
            return getattr(holder["engine"], item)

    add_servicers(server, _Lazy())
    await server.start()
    log.info("%s listening on %s:%d (metrics on :%s); loading model %s",
             name, settings.host, bound, settings.metrics_port or "off", model_label)
    try:
        engine = await asyncio.to_thread(load)
    except Exception:
        log.exception("%s: model failed to load", name)
        metrics.MODEL_LOADED.labels(**metrics.base()).set(0)
        await server.stop(0)
        raise SystemExit(3)
    holder["engine"] = engine
    load_s = time.perf_counter() - t0
    metrics.MODEL_LOAD_SECONDS.labels(**metrics.base()).set(load_s)
    metrics.MODEL_LOADED.labels(**metrics.base()).set(1)
    for svc in ["", *service_names]:
        await health_servicer.set(svc, health_pb2.HealthCheckResponse.SERVING)
    log.info("%s SERVING after %.2f s", name, load_s)
    if ready is not None:
        ready.set()

    await stop.wait()
    log.info("%s: draining in-flight streams for up to %.1f s", name, settings.drain_seconds)
    for svc in ["", *service_names]:
        await health_servicer.set(svc, health_pb2.HealthCheckResponse.NOT_SERVING)
    await server.stop(settings.drain_seconds)
    close = getattr(engine, "close", None)
    if callable(close):
        close()
    log.info("%s stopped", name)


def run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
