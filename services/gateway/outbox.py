"""The bounded queue of server events waiting for the WebSocket writer.

Policy: output audio is paced (a response keeps at most ``audio_lead_ms``
ahead of playback), so a healthy client never has many events queued. A client
that stops reading lets the queue reach ``max_events``; the session then closes
the socket (1008) rather than grow memory — its state stays in the store, so it
can reconnect. Control overtakes data: on barge-in ``purge_audio`` removes the
paused response's queued audio deltas before ``output_audio_buffer.cleared`` is
queued, and reports how much audio was never sent."""
from __future__ import annotations

import asyncio
import collections
import dataclasses
from typing import Any

from services.gateway import metrics


@dataclasses.dataclass
class Queued:
    event: dict[str, Any]
    at: float                      # clock time it was queued (tests read it)
    response_id: str | None = None
    audio_ms: float = 0.0          # output audio carried, for purge accounting


class Outbox:
    def __init__(self, max_events: int, clock, session_label: str = "") -> None:
        self.max_events = max_events
        self._clock = clock
        self._q: collections.deque[Queued] = collections.deque()
        self._ready = asyncio.Event()
        self.overflowed = False
        self.closed = False

    def __len__(self) -> int:
        return len(self._q)

    def put(self, event: dict[str, Any], *, response_id: str | None = None, audio_ms: float = 0.0) -> bool:
        """Queue an event; False (and ``overflowed``) when the client is not reading."""
        if self.closed:
            return False
        if len(self._q) >= self.max_events:
            if not self.overflowed:
                self.overflowed = True
                metrics.ERRORS.labels(**metrics.base(), code="client_not_reading").inc()
            self._ready.set()  # wake the writer so it can close the socket
            return False
        self._q.append(Queued(event, self._clock.now(), response_id, audio_ms))
        metrics.QUEUE_DEPTH.labels(**metrics.base(), queue="outbox").inc()
        self._ready.set()
        return True

    def purge_audio(self, response_id: str) -> float:
        """Drop queued audio deltas of one response; returns the ms dropped."""
        kept: collections.deque[Queued] = collections.deque()
        dropped = 0.0
        for q in self._q:
            if q.response_id == response_id and q.audio_ms:
                dropped += q.audio_ms
            else:
                kept.append(q)
        metrics.QUEUE_DEPTH.labels(**metrics.base(), queue="outbox").dec(len(self._q) - len(kept))
        self._q = kept
        return dropped

    async def get(self) -> Queued | None:
        """Next event, or None once closed/overflowed (the writer then stops)."""
        while True:
            if self.overflowed or (self.closed and not self._q):
                return None
            if self._q:
                q = self._q.popleft()
                metrics.QUEUE_DEPTH.labels(**metrics.base(), queue="outbox").dec()
                return q
            self._ready.clear()
            await self._ready.wait()

    def close(self) -> None:
        self.closed = True
        self._ready.set()

    def discard(self) -> None:
        """Drop what is left (the socket is gone) and keep the depth gauge honest."""
        metrics.QUEUE_DEPTH.labels(**metrics.base(), queue="outbox").dec(len(self._q))
        self._q.clear()
        self.close()
