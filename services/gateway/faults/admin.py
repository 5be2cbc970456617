"""``/admin/faults``: set, list and end injected faults at run time, without
a restart (drills/, docs/drills.md). Protected by the admin keys
(``GATEWAY_ADMIN_API_KEYS``, access.check_admin); refused when none is set.

    POST   /admin/faults  {"service": "tts", "kind": "error", "rate": 0.2, "duration_s": 120}
                          (+ "variant": "canary" to break only the calls routed to the canary pool)
    GET    /admin/faults                 the active faults, with the seconds each has left
    DELETE /admin/faults[?service=tts]   end one service's fault, or all

With Redis, a fault set or ended on one gateway is set or ended on every
gateway of that Redis within a second (shared.py); the response's ``scope``
says which it was ("fleet", or "this gateway" with the reason).

Every change is logged at WARNING with the admin key's fingerprint: an
injected fault looks like an outage to whoever is on call."""
from __future__ import annotations

import dataclasses
import json
import logging
import uuid
from typing import Sequence

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from services.gateway.access import Denied, check_admin
from services.gateway.faults.shared import SharedFaults
from services.gateway.faults.table import FaultRequestError, FaultTable, parse

log = logging.getLogger(__name__)


def install(app: FastAPI, table: FaultTable, admin_keys: Sequence[str], max_duration_s: float,
            shared: SharedFaults | None = None) -> None:
    keys = list(admin_keys)

    def scope(why: str | None) -> dict:
        if shared is None:
            return {"scope": "this gateway", "why": "no Redis: faults are not shared"}
        return {"scope": "fleet"} if why is None else {"scope": "this gateway", "why": why}

    def listing() -> dict:
        now = table.clock.now()
        return {"faults": [f.wire(now) for f in table.current()]}

    @app.get("/admin/faults")
    async def get_faults(request: Request) -> JSONResponse:
        try:
            check_admin(request.headers, keys)
        except Denied as d:
            return JSONResponse(d.body(), d.status)
        return JSONResponse(listing())

    @app.post("/admin/faults")
    async def set_fault(request: Request) -> JSONResponse:
        try:
            who = check_admin(request.headers, keys)
            try:
                body = json.loads(await request.body() or b"null")
            except ValueError as exc:
                raise Denied(400, "invalid_json", f"the body is not valid JSON: {exc}") from None
            try:
                fault = parse(body, table.clock.now(), max_duration_s)
            except FaultRequestError as exc:
                raise Denied(400, "invalid_fault", str(exc)) from None
        except Denied as d:
            return JSONResponse(d.body(), d.status)
        fault = dataclasses.replace(fault, id=uuid.uuid4().hex[:16])
        why = await shared.publish(fault) if shared is not None else None
        fault = dataclasses.replace(fault, shared=shared is not None and why is None)
        table.set(fault)
        log.warning("fault injection ON by admin key %s: %s (%s)", who, fault.wire(table.clock.now()),
                    scope(why))
        return JSONResponse({**scope(why), **listing()})

    @app.delete("/admin/faults")
    async def end_faults(request: Request) -> JSONResponse:
        try:
            who = check_admin(request.headers, keys)
        except Denied as d:
            return JSONResponse(d.body(), d.status)
        service = request.query_params.get("service")
        # Redis first, then here (as a set): a read of Redis begun meanwhile
        # cannot bring back what this gateway just ended.
        why = await shared.withdraw(service) if shared is not None else None
        ended = table.clear(service)
        if ended:
            log.warning("fault injection OFF by admin key %s: %s", who, ", ".join(ended))
        return JSONResponse({"ended": ended, **scope(why), **listing()})
