"""The FastAPI app: WebSocket /v1/realtime, GET /healthz (200 only when every
backend address is SERVING), GET /metrics, and the browser client from web/
at / when that folder exists (mounted last, so it never shadows the API)."""
from __future__ import annotations

import contextlib
import dataclasses
import logging
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse, Response
from prometheus_client import REGISTRY
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from common import metrics as common_metrics
from common.clock import MonotonicClock
from services.gateway import backends as _backends  # noqa: F401  (package docstring)
from services.gateway import connection
from services.gateway.backends import health
from services.gateway.backends.routing import BackendPool
from services.gateway.settings import GatewaySettings
from services.gateway.store import SessionStore

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[2]


class GrpcProvider:
    """Backends over real gRPC channels, with /healthz probes of every address."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.pool = BackendPool(settings)

    def for_session(self, session_id: str):
        return self.pool.for_session(session_id)

    async def health(self) -> dict[str, dict[str, str]]:
        chans = {svc: {a: self.pool.channel(a) for a in addrs}
                 for svc, addrs in self.pool.all_addresses().items()}
        return await health.check_all(chans)

    async def close(self) -> None:
        await self.pool.close()


@dataclasses.dataclass
class GatewayContext:
    settings: GatewaySettings
    clock: Any
    store: Any
    backends: Any


def create_app(settings: GatewaySettings, *, backends: Any = None, clock: Any = None,
               store: Any = None) -> FastAPI:
    """``backends`` is any provider with for_session/health/close (default: gRPC)."""
    ctx = GatewayContext(settings, clock or MonotonicClock(),
                         store or SessionStore(settings.redis_url, settings.session_ttl_s),
                         backends or GrpcProvider(settings))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        ctx.store.start()
        try:
            yield
        finally:
            await ctx.store.close()
            await ctx.backends.close()

    app = FastAPI(title="voice gateway (OpenAI Realtime API)", lifespan=lifespan)
    app.state.ctx = ctx

    @app.websocket("/v1/realtime")
    async def realtime(ws: WebSocket) -> None:
        await connection.serve(ws, ctx)

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        status = await ctx.backends.health()
        bad = {svc: {a: s for a, s in addrs.items() if s != "SERVING"} for svc, addrs in status.items()}
        bad = {svc: addrs for svc, addrs in bad.items() if addrs}
        if bad:
            return JSONResponse({"status": "unavailable", "not_serving": bad, "backends": status}, 503)
        return JSONResponse({"status": "ok", "backends": status})

    @app.get("/metrics")
    async def metrics_endpoint(request: Request) -> Response:
        # OpenMetrics (with trace-id exemplars) when Prometheus asks for it.
        body, content_type = common_metrics.exposition(request.headers.get("accept"))
        return Response(body, media_type=content_type)

    @app.get("/metrics/openmetrics")
    async def openmetrics() -> Response:
        # Exemplars (trace ids on the latency histograms) only exist in OpenMetrics.
        return Response(generate_openmetrics(REGISTRY), media_type=OPENMETRICS)

    web = Path(settings.web_dir)
    web = web if web.is_absolute() else ROOT / web
    if web.is_dir():
        from fastapi.staticfiles import StaticFiles

        app.mount("/", StaticFiles(directory=str(web), html=True), name="web")
    return app
