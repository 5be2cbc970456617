"""Session and variants on every gateway log line written inside a session.

The connection handler sets a context variable once the session's backends
are routed; asyncio copies the context into every task the session starts,
so a line logged by its turns, responses or stream keepers ends with
``[sess_… canary=tts]`` (or ``[sess_… stable]``) without each call passing it.
A release's canary lines can then be told from stable's in any log search."""
from __future__ import annotations

import contextvars
import logging

from common import redact

_TAG: contextvars.ContextVar[str] = contextvars.ContextVar("voice_session_tag", default="")


def tag(session_id: str, variants: dict[str, str]) -> str:
    """The id as redaction cuts it (common/redact.py): this filter runs after
    the redaction filter, and a whole id resumes a conversation on a keyless
    gateway, so it must never reach a log whole."""
    canary = sorted(s for s, v in variants.items() if v == "canary")
    sid = redact.redact(session_id)
    return f"{sid} canary={','.join(canary)}" if canary else f"{sid} stable"


def set_session(session_id: str, variants: dict[str, str]) -> None:
    _TAG.set(tag(session_id, variants))


class SessionTagFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        t = _TAG.get()
        if t and not getattr(record, "session_tagged", False):
            record.msg, record.session_tagged = f"{record.getMessage()} [{t}]", True
            record.args = None
        return True


def install(logger: logging.Logger | None = None) -> None:
    """Put the filter on every handler of ``logger`` (default: the root)."""
    for h in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, SessionTagFilter) for f in h.filters):
            h.addFilter(SessionTagFilter())
