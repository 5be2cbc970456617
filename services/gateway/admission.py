"""Admission control: how many Realtime sessions this gateway carries at once.

Beyond the measured capacity every extra conversation makes all of them slow
(issue #11: 4 people on the 2-core host double everyone's voice-to-voice), so
a session over the limit is refused plainly at connect (``server_busy``) and
the admitted ones keep their latency.

Sans-IO and synchronous on purpose: ``admit()`` checks and takes a slot with
no ``await`` in between, so two connections arriving together on the event
loop can never both take the last slot. The connection (services/gateway/
connection.py) does the socket work; readiness (/readyz) asks ``unavailable()``.
"""
from __future__ import annotations

LIMIT = "limit"          # refusal reasons: the ``reason`` label of
DRAINING = "draining"    # voice_gateway_sessions_refused_total


class Admission:
    """A counting gate with a limit (0 = unlimited) and a draining state.

    Illegal use raises at once: a release without an admit is a bug in the
    caller (a slot counted twice), not something to clamp."""

    def __init__(self, limit: int) -> None:
        if limit < 0:
            raise ValueError(f"session limit must be 0 (unlimited) or more, not {limit}")
        self.limit = limit
        self.active = 0
        self.draining = False

    def admit(self) -> str | None:
        """Take a slot: None when admitted, else why not (LIMIT or DRAINING)."""
        refused = self.unavailable()
        if refused is None:
            self.active += 1
        return refused

    def release(self) -> None:
        """Give back a slot taken by a successful ``admit()``."""
        if self.active == 0:
            raise RuntimeError("release() without a matching admit()")
        self.active -= 1

    def drain(self) -> None:
        """Refuse every new session from now on; admitted ones carry on."""
        self.draining = True

    def unavailable(self) -> str | None:
        """Why a new session would be refused now (LIMIT, DRAINING), or None."""
        if self.draining:
            return DRAINING
        if self.limit and self.active >= self.limit:
            return LIMIT
        return None
