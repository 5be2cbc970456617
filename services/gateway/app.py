"""The FastAPI app: WebSocket /v1/realtime, GET /healthz (200 only when every
stable backend address is SERVING; a canary that is not only loses its
sessions to stable and is listed under ``canary_unavailable``, so one canary
replica down is no outage), GET /readyz (healthz, and room for one more
session: what a load balancer or Kubernetes should route by), GET /metrics,
/admin/faults (fault injection for drills, admin keys only: faults/admin.py),
and the browser client from web/ at / when that folder exists (mounted last,
so it never shadows the API).

Why two endpoints: /healthz answers "does this gateway work", which `make
run`, compose's healthcheck and the test stacks wait for; a gateway that is
full works fine and must stay healthy there. /readyz answers "send it a new
session?", and says no at the session limit and while draining."""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
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
from services.gateway import admission, connection, echo, metrics
from services.gateway.access import AccessPolicy, Denied, split_list
from services.gateway.admission import Admission
from services.gateway.backends.provider import GrpcProvider
from services.gateway.faults import admin as faults_admin
from services.gateway.faults.shared import SharedFaults
from services.gateway.faults.table import FaultTable
from services.gateway.settings import GatewaySettings
from services.gateway.store import SessionStore

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[2]


# /readyz body for each reason admission.Admission.unavailable() gives.
NOT_READY = {admission.LIMIT: ("full", "at the session limit: new sessions get server_busy"),
             admission.DRAINING: ("draining", "shutting down: new sessions get server_busy")}


@dataclasses.dataclass
class GatewayContext:
    settings: GatewaySettings
    clock: Any
    store: Any
    backends: Any
    admission: Admission
    access: AccessPolicy
    faults: FaultTable


def create_app(settings: GatewaySettings, *, backends: Any = None, clock: Any = None,
               store: Any = None) -> FastAPI:
    """``backends`` is any provider with start/for_session/health/canary_addresses/
    release_status/close (default: gRPC, backends/provider.py).
    Raises ValueError when the access settings are unsafe (a non-loopback bind
    without API keys) or a retrieval threshold is out of its range, before
    anything is started."""
    for name, lo, what in (("rag_min_score", -1.0, "a cosine score between -1 and 1"),
                           ("rag_decline_below", 0.0, "a share between 0 and 1")):
        value = getattr(settings, name)
        if not lo <= value <= 1.0:      # NaN fails too
            raise ValueError(f"{name} is {what}, not {value} (GATEWAY_{name.upper()})")
    admin_keys = split_list(settings.admin_api_keys)
    if any(len(k) < 16 for k in admin_keys):
        raise ValueError("every admin API key must have at least 16 characters")
    policy = AccessPolicy(bind_host=settings.host, api_keys=settings.keys(),
                          allowed_origins=split_list(settings.allowed_origins),
                          allow_insecure=settings.allow_insecure, secret_ttl_s=settings.client_secret_ttl_s)
    clock = clock or MonotonicClock()
    faults = FaultTable(clock)    # empty unless a drill sets a fault (/admin/faults)
    # Without admin keys no fault can ever be set: the calls then carry no
    # fault hook at all (zero cost), not even the empty-table test.
    hook = faults if admin_keys else None
    # Several gateways on one Redis share their faults (a drill breaks the fleet).
    shared = (SharedFaults.connect(faults, settings.redis_url, settings.redis_password())
              if admin_keys and settings.redis_url else None)
    ctx = GatewayContext(settings, clock,
                         store or SessionStore(settings.redis_url, settings.session_ttl_s,
                                               settings.store_redacted, settings.redis_password(), hook),
                         backends or GrpcProvider(settings, hook), Admission(settings.max_sessions), policy,
                         faults)
    metrics.SESSION_LIMIT.labels(**metrics.base()).set(settings.max_sessions)
    if settings.echo_cancel:
        echo.warm()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        ctx.store.start()
        await ctx.backends.start()
        sync = asyncio.create_task(shared.run(), name="shared-faults") if shared is not None else None
        try:
            yield
        finally:
            if sync is not None:
                sync.cancel()
                await asyncio.gather(sync, return_exceptions=True)
            if shared is not None:
                await shared.close()
            # Sessions that still arrive while we stop are refused (server_busy, draining).
            ctx.admission.drain()
            await ctx.store.close()
            await ctx.backends.close()

    app = FastAPI(title="voice gateway (OpenAI Realtime API)", lifespan=lifespan)
    app.state.ctx = ctx

    @app.websocket("/v1/realtime")
    async def realtime(ws: WebSocket) -> None:
        await connection.serve(ws, ctx)

    @app.post("/v1/realtime/client_secrets")
    async def client_secrets(request: Request) -> JSONResponse:
        """A short-lived secret for a browser, minted with an API key (Realtime API shape)."""
        try:
            principal = policy.check(request.headers)
            ttl = _requested_ttl(await request.body())
            return JSONResponse(policy.mint(principal, ttl))
        except Denied as d:
            metrics.ERRORS.labels(**metrics.base(), code=d.code).inc()
            return JSONResponse(d.body(), d.status)

    @app.delete("/v1/realtime/sessions/{session_id}")
    async def delete_session(session_id: str, request: Request) -> JSONResponse:
        """Erase a session's conversation now (memory and Redis), for the
        credential that created it; anyone else gets 404, as for a missing one."""
        try:
            principal = policy.check(request.headers)
        except Denied as d:
            metrics.ERRORS.labels(**metrics.base(), code=d.code).inc()
            return JSONResponse(d.body(), d.status)
        state = await ctx.store.load(session_id)
        if state is None or state.owner != principal.id:
            return JSONResponse({"error": {"type": "invalid_request_error", "code": "session_not_found",
                                           "message": "no such session for this credential"}}, 404)
        try:
            await ctx.store.delete(session_id)
        except Exception:
            return JSONResponse({"error": {"type": "server_error", "code": "session_store_unavailable",
                                           "message": "the session store did not confirm the deletion; "
                                           "try again"}}, 503)
        return JSONResponse({"id": session_id, "object": "realtime.session", "deleted": True})

    async def backend_health(ok: dict[str, Any]) -> JSONResponse:
        status = await ctx.backends.health()
        canary = ctx.backends.canary_addresses()

        def down(is_canary: bool) -> dict[str, dict[str, str]]:
            out = {svc: {a: s for a, s in addrs.items()
                         if s != "SERVING" and (a in canary.get(svc, ())) == is_canary}
                   for svc, addrs in status.items()}
            return {svc: addrs for svc, addrs in out.items() if addrs}

        bad, canary_down = down(False), down(True)
        extra = {"release": ctx.backends.release_status(),
                 "canary": {svc: list(addrs) for svc, addrs in canary.items() if addrs}}
        if canary_down:
            extra["canary_unavailable"] = canary_down
        if bad:
            return JSONResponse({"status": "unavailable", "not_serving": bad, "backends": status, **extra}, 503)
        return JSONResponse({**ok, "backends": status, **extra})

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        return await backend_health({"status": "ok"})

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        adm = ctx.admission
        sessions = {"active_sessions": adm.active, "max_sessions": adm.limit}
        why = adm.unavailable()
        if why is not None:
            status, detail = NOT_READY[why]
            return JSONResponse({"status": status, **sessions, "detail": detail}, 503)
        return await backend_health({"status": "ready", **sessions})

    @app.get("/metrics")
    async def metrics_endpoint(request: Request) -> Response:
        # OpenMetrics (with trace-id exemplars) when Prometheus asks for it.
        body, content_type = common_metrics.exposition(request.headers.get("accept"))
        return Response(body, media_type=content_type)

    @app.get("/metrics/openmetrics")
    async def openmetrics() -> Response:
        # Exemplars (trace ids on the latency histograms) only exist in OpenMetrics.
        return Response(generate_openmetrics(REGISTRY), media_type=OPENMETRICS)

    faults_admin.install(app, faults, admin_keys, settings.fault_max_duration_s, shared)

    web = Path(settings.web_dir)
    web = web if web.is_absolute() else ROOT / web
    if web.is_dir():
        from fastapi.staticfiles import StaticFiles

        app.mount("/", StaticFiles(directory=str(web), html=True), name="web")
    return app


MAX_SECRET_TTL_S = 7200


def _requested_ttl(body: bytes) -> int | None:
    """``expires_after.seconds`` of a client_secrets request (10..7200, as the
    Realtime API allows), or None for the default."""
    if not body.strip():
        return None
    try:
        req = json.loads(body)
    except ValueError as exc:
        raise Denied(400, "invalid_json", f"the request body is not valid JSON: {exc}") from None
    seconds = (req.get("expires_after") or {}).get("seconds") if isinstance(req, dict) else None
    if seconds is None:
        return None
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not 10 <= seconds <= MAX_SECRET_TTL_S:
        raise Denied(400, "invalid_value", f"'expires_after.seconds' must be 10..{MAX_SECRET_TTL_S}, got {seconds!r}")
    return seconds
