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

# A one-element list, so that a session resumed on its connection (retag) is
# seen by the tasks the connection had already started: they share the list.
_TAG: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("voice_session_tag", default=None)


def tag(session_id: str, variants: dict[str, str]) -> str:
    """The id as redaction cuts it (common/redact.py): this filter runs after
    the redaction filter, and a whole id resumes a conversation on a keyless
    gateway, so it must never reach a log whole."""
    canary = sorted(s for s, v in variants.items() if v == "canary")
    sid = redact.redact(session_id)
    return f"{sid} canary={','.join(canary)}" if canary else f"{sid} stable"


def set_session(session_id: str, variants: dict[str, str]) -> None:
    """Tag what this task, and every task it starts from now, logs."""
    _TAG.set([tag(session_id, variants)])


def retag(session_id: str, variants: dict[str, str]) -> None:
    """Another session on the same connection (a resume by session.update):
    the tasks already started log with the new tag too."""
    holder = _TAG.get()
    if holder is None:
        set_session(session_id, variants)
    else:
        holder[0] = tag(session_id, variants)


class SessionTagFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        holder = _TAG.get()
        t = holder[0] if holder else ""
        if t and not getattr(record, "session_tagged", False):
            record.msg, record.session_tagged = f"{record.getMessage()} [{t}]", True
            record.args = None
        return True


def install(logger: logging.Logger | None = None) -> None:
    """Put the filter on every handler of ``logger`` (default: the root)."""
    for h in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, SessionTagFilter) for f in h.filters):
            h.addFilter(SessionTagFilter())
