"""Resuming a stored session on a new connection (``session.update`` with
``session.id``): only before this connection has items or a turn, only a
session of the same credential (the loader connection.py passes in returns
no other), and on the variants the session was given (a canary session stays
on the canary), not this connection's."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from services.gateway import log_context
from services.gateway.protocol import ProtocolError

if TYPE_CHECKING:
    from services.gateway.conversation import Conversation

log = logging.getLogger(__name__)


async def resume_session(conv: "Conversation", ev: dict, session_id: str) -> None:
    """Replace ``conv``'s state by the stored session ``session_id``, or raise
    the ProtocolError that says why not."""
    if conv.state.items or conv.response is not None:
        raise ProtocolError("session_resume_not_allowed",
                            f"session.update: cannot resume session '{session_id}': this session "
                            "already has conversation items", "session.id", ev.get("event_id"))
    if conv.turns.turn is not None or conv.preemption.held is not None:
        raise ProtocolError("session_resume_not_allowed",
                            f"session.update: cannot resume session '{session_id}' while the user is "
                            "speaking: resume before sending audio, or after the turn", "session.id",
                            ev.get("event_id"))
    loaded = await conv.load_session(session_id) if conv.load_session else None
    if loaded is None:
        raise ProtocolError("session_not_found", f"session.update: session '{session_id}' was not found "
                            "(expired or never stored)", "session.id", ev.get("event_id"))
    if conv.route is None:
        conv.state = loaded
        return
    backends = conv.route(loaded.id, loaded.variants)
    loaded.variants = dict(backends.variants)
    conv.state = loaded
    log_context.retag(loaded.id, backends.variants)
    await use_backends(conv, backends)
    log.info("session %s resumed by session.update (variants %s)", loaded.id, backends.variants)


async def use_backends(conv: "Conversation", backends: Any) -> None:
    """Serve the session from other backends: later calls use them, the VAD
    and ASR streams reopen on them."""
    conv.backends = backends
    t = conv.turns
    t.vad.client, t.asr.client = backends.vad, backends.asr
    await t.vad.restart()
    await t.asr.restart()
