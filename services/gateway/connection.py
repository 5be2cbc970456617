"""One WebSocket connection: take an admission slot (or refuse with one
``server_busy`` event and close code 1013), create or resume the session, then
read client events (each parsed and validated; a bad one gets an ``error``
event and the session goes on) while a writer task drains the session's
bounded outbox."""
from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from fastapi import WebSocket
from fastapi.responses import JSONResponse
from starlette.websockets import WebSocketDisconnect

from services.gateway import access, admission, events, log_context, metrics, protocol
from services.gateway.conversation import Conversation
from services.gateway.defaults import default_config, rag_has_documents
from services.gateway.protocol import ProtocolError, new_id
from services.gateway.session import SessionState

log = logging.getLogger(__name__)


TRY_AGAIN_LATER = 1013   # WebSocket close code (RFC 6455 registry): "Try Again Later"


async def serve(ws: WebSocket, ctx: Any) -> None:
    """``ctx`` is the app's GatewayContext (settings, clock, store, backends, admission, access)."""
    offered = ws.scope.get("subprotocols") or []
    try:
        principal = ctx.access.check(ws.headers, offered)
    except access.Denied as d:
        await deny(ws, d)
        return
    # Browser Realtime clients offer "realtime" next to the key and fail unless
    # one is chosen; the key-carrying subprotocol is never echoed back.
    sub = "realtime" if "realtime" in offered else None
    # Before any await: the check and the count are one step on the event loop.
    refused = ctx.admission.admit()
    if refused is not None:
        await _refuse(ws, ctx, refused, sub)
        return
    try:
        await _session(ws, ctx, principal, sub)
    finally:
        ctx.admission.release()


SESSION_HEADER = "x-session-id"
SESSION_SUBPROTOCOL = "voice-session."


def wanted_session(ws: WebSocket) -> tuple[str | None, str]:
    """The session a client asks to resume, and how it asked: the
    ``X-Session-Id`` header (non-browser clients), the ``voice-session.<id>``
    WebSocket subprotocol (browsers, which cannot set headers; offered next
    to "realtime", the one echoed back), or the older ``?session_id=`` query,
    still accepted for clients that send it (redacted from every log line,
    common/redact.py). Not in a URL, an id stays out of access logs and
    proxies' logs."""
    if ws.headers.get(SESSION_HEADER):
        return ws.headers[SESSION_HEADER].strip(), "X-Session-Id"
    for p in ws.scope.get("subprotocols") or []:
        if p.startswith(SESSION_SUBPROTOCOL) and len(p) > len(SESSION_SUBPROTOCOL):
            return p[len(SESSION_SUBPROTOCOL):], "Sec-WebSocket-Protocol"
    return ws.query_params.get("session_id") or None, "session_id"


async def deny(ws: WebSocket, d: access.Denied) -> None:
    """Refuse at the upgrade with an HTTP status (403: origin, 401: credential)
    and a JSON body saying why; no session exists."""
    metrics.ERRORS.labels(**metrics.base(), code=d.code).inc()
    log.warning("connection refused (%s): %s", d.code, d.message)
    await ws.send_denial_response(JSONResponse(d.body(), d.status))


async def _refuse(ws: WebSocket, ctx: Any, reason: str, sub: str | None) -> None:
    """Accept, say why in one ``error`` event, close with 1013. The WebSocket is
    accepted rather than rejected at the handshake so a Realtime client gets a
    readable event (browsers hide handshake status codes). No session exists."""
    retry = ctx.settings.busy_retry_after_s
    if reason == admission.DRAINING:
        why = "the server is shutting down and takes no new sessions"
    else:
        why = f"the server is at its limit of {ctx.admission.limit} concurrent sessions"
    metrics.SESSIONS_REFUSED.labels(**metrics.base(), reason=reason).inc()
    metrics.ERRORS.labels(**metrics.base(), code="server_busy").inc()
    log.warning("session refused (%s): %d active, limit %d", reason, ctx.admission.active, ctx.admission.limit)
    try:
        await ws.accept(subprotocol=sub)
        await ws.send_text(json.dumps(events.server_busy(f"{why}; try again in {retry:g} s", retry)))
        metrics.WS_MESSAGES.labels(**metrics.base(), direction="out", type="error").inc()
        await ws.close(code=TRY_AGAIN_LATER, reason=f"server busy ({reason}): retry in {retry:g} s")
    except (WebSocketDisconnect, RuntimeError, OSError):
        return


async def _session(ws: WebSocket, ctx: Any, principal: access.Principal, sub: str | None) -> None:
    await ws.accept(subprotocol=sub)
    settings = ctx.settings

    async def load_own(session_id: str) -> SessionState | None:
        # Another credential's session is "not found": an id alone resumes nothing.
        state = await ctx.store.load(session_id)
        return state if state is not None and state.owner == principal.id else None

    wanted, via = wanted_session(ws)
    state = await load_own(wanted) if wanted else None
    resumed = state is not None
    if state is None:
        state = SessionState(id=new_id("sess"), config=default_config(settings, ws.query_params.get("model")),
                             owner=principal.id)
    backends = ctx.backends.for_session(state.id, state.variants)
    log_context.set_session(state.id, backends.variants)
    variants_changed = state.variants != backends.variants
    state.variants = dict(backends.variants)
    if not resumed:
        # Retrieval is on by default only when the RAG service has documents.
        if state.config.retrieval_enabled and await rag_has_documents(backends.rag, ctx.clock) is False:
            state.config.retrieval_enabled = False
    if not resumed or variants_changed:
        ctx.store.save(state)
    if not resumed:
        for svc, variant in backends.variants.items():
            metrics.count_routing(svc, variant)
    conv = Conversation(state, settings, backends, ctx.clock, ctx.store, load_own, ctx.backends.for_session)
    created = state.config.wire(state.id)
    if resumed:
        # Extension: a resumed session tells the client what it remembers.
        created["conversation_items"] = [it.wire() for it in state.items]
    conv.emit(events.ev("session.created", session=created))
    if wanted and not resumed:
        conv.emit(events.error("session_not_found", f"session '{wanted}' was not found (expired or never "
                               f"stored); started a new session '{state.id}'", param=via))
    metrics.ACTIVE_SESSIONS.labels(**metrics.base()).inc()
    log.info("session %s %s (variants %s)", state.id, "resumed" if resumed else "created", backends.variants)
    conv.start()
    writer = asyncio.create_task(_write(ws, conv), name=f"{state.id}:writer")
    try:
        await _read(ws, conv, settings.max_message_bytes)
    finally:
        # Also when this handler is cancelled (a server shutting down, a test
        # client's exit): every await below then raises at once, and the
        # session's tasks must still be cancelled, not left running for ever.
        writer.cancel()
        try:
            await asyncio.wait([writer], timeout=1.0)
        finally:
            try:
                await conv.close()
            finally:
                metrics.ACTIVE_SESSIONS.labels(**metrics.base()).dec()
                log.info("session %s closed", conv.state.id)


async def _read(ws: WebSocket, conv: Conversation, max_bytes: int) -> None:
    while True:
        try:
            msg = await ws.receive()
        except (WebSocketDisconnect, RuntimeError):
            return
        if msg["type"] == "websocket.disconnect":
            return
        raw = msg.get("text")
        if raw is None:
            raw = msg.get("bytes") or b""
        try:
            ev = protocol.parse(raw, max_bytes)
        except ProtocolError as e:
            metrics.WS_MESSAGES.labels(**metrics.base(), direction="in", type="invalid").inc()
            conv.protocol_error(e)
            continue
        metrics.WS_MESSAGES.labels(**metrics.base(), direction="in", type=ev["type"]).inc()
        await conv.handle(ev)
        if conv.outbox.overflowed:
            return


async def _write(ws: WebSocket, conv: Conversation) -> None:
    try:
        while True:
            q = await conv.outbox.get()
            if q is None:
                break
            await ws.send_text(json.dumps(q.event))
            metrics.WS_MESSAGES.labels(**metrics.base(), direction="out", type=q.event["type"]).inc()
        if conv.outbox.overflowed:
            log.warning("session %s: client is not reading (outbox full): closing", conv.state.id)
            await ws.close(code=1008, reason="client is not reading: outgoing event queue full")
        elif conv.supervisor.close_code is not None:
            # A critical task kept failing: its error event is sent, now close.
            await ws.close(code=conv.supervisor.close_code, reason="internal error: session closed, resume it")
    except (WebSocketDisconnect, RuntimeError, OSError):
        return
