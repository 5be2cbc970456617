"""One WebSocket connection: create or resume the session, then read client
events (each parsed and validated; a bad one gets an ``error`` event and the
session goes on) while a writer task drains the session's bounded outbox."""
from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect

from services.gateway import events, metrics, protocol
from services.gateway.conversation import Conversation, default_config, rag_has_documents
from services.gateway.protocol import ProtocolError, new_id
from services.gateway.session import SessionState

log = logging.getLogger(__name__)


async def serve(ws: WebSocket, ctx: Any) -> None:
    """``ctx`` is the app's GatewayContext (settings, clock, store, backends)."""
    await ws.accept()
    settings = ctx.settings
    wanted = ws.query_params.get("session_id")
    state = await ctx.store.load(wanted) if wanted else None
    resumed = state is not None
    if state is None:
        state = SessionState(id=new_id("sess"), config=default_config(settings, ws.query_params.get("model")))
    backends = ctx.backends.for_session(state.id)
    if not resumed:
        # Retrieval is on by default only when the RAG service has documents.
        if state.config.retrieval_enabled and await rag_has_documents(backends.rag, ctx.clock) is False:
            state.config.retrieval_enabled = False
        ctx.store.save(state)
    if not resumed:
        for svc, variant in backends.variants.items():
            metrics.count_routing(svc, variant)
    conv = Conversation(state, settings, backends, ctx.clock, ctx.store, ctx.store.load)
    created = state.config.wire(state.id)
    if resumed:
        # Extension: a resumed session tells the client what it remembers.
        created["conversation_items"] = [it.wire() for it in state.items]
    conv.emit(events.ev("session.created", session=created))
    if wanted and not resumed:
        conv.emit(events.error("session_not_found", f"session '{wanted}' was not found (expired or never "
                               f"stored); started a new session '{state.id}'", param="session_id"))
    metrics.ACTIVE_SESSIONS.labels(**metrics.base()).inc()
    log.info("session %s %s (variants %s)", state.id, "resumed" if resumed else "created", backends.variants)
    conv.start()
    writer = asyncio.create_task(_write(ws, conv), name=f"{state.id}:writer")
    try:
        await _read(ws, conv, settings.max_message_bytes)
    finally:
        writer.cancel()
        await asyncio.wait([writer], timeout=1.0)
        await conv.close()
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
    except (WebSocketDisconnect, RuntimeError, OSError):
        return
