"""Session state in Redis, with memory as the fallback.

Every change of a session's config or items is saved to memory at once and
marked pending; one flusher task writes pending sessions to Redis (with the
session TTL). If Redis is down, sessions carry on from memory; each failed
operation is logged and counted (voice_gateway_redis_failures_total{op}), the
flusher retries with backoff, and everything pending is written back when
Redis returns. A session id resumes from Redis (another process wrote it) or,
failing that, from this process's memory."""
from __future__ import annotations

import asyncio
import collections
import json
import logging
from typing import Any

from services.gateway import metrics
from services.gateway.session import SessionState

log = logging.getLogger(__name__)
KEY = "voice:session:{}"
MEMORY_SESSIONS = 2000


class SessionStore:
    def __init__(self, url: str, ttl_s: int) -> None:
        self.url, self.ttl_s = url, ttl_s
        self._redis = None
        if url:
            import redis.asyncio as aioredis

            self._redis = aioredis.from_url(url, socket_connect_timeout=0.5, socket_timeout=1.0)
        self._memory: collections.OrderedDict[str, dict[str, Any]] = collections.OrderedDict()
        self._pending: set[str] = set()
        self._version: dict[str, int] = {}
        self._wake = asyncio.Event()
        self._flusher: asyncio.Task | None = None
        self.healthy = True

    # -- lifecycle (owned by the app's lifespan) --------------------------------
    def start(self) -> None:
        if self._redis is not None and self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_loop(), name="session-store-flusher")

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.wait([self._flusher], timeout=2.0)
            self._flusher = None
        if self._pending and self._redis is not None:
            await self._flush_once()  # last chance; failures are counted and logged
        if self._redis is not None:
            await self._redis.aclose()

    # -- API ----------------------------------------------------------------------
    def save(self, state: SessionState) -> None:
        self._memory[state.id] = state.to_store()
        self._memory.move_to_end(state.id)
        self._version[state.id] = self._version.get(state.id, 0) + 1
        while len(self._memory) > MEMORY_SESSIONS:
            old, _ = self._memory.popitem(last=False)
            self._pending.discard(old)
            self._version.pop(old, None)
        if self._redis is not None:
            self._pending.add(state.id)
            self._wake.set()

    async def load(self, session_id: str) -> SessionState | None:
        if session_id in self._pending or self._redis is None:
            d = self._memory.get(session_id)
            return SessionState.from_store(d) if d else None
        try:
            raw = await self._redis.get(KEY.format(session_id))
        except Exception as exc:
            self._failed("read", exc)
            d = self._memory.get(session_id)
            return SessionState.from_store(d) if d else None
        if raw is None:
            d = self._memory.get(session_id)
            return SessionState.from_store(d) if d else None
        return SessionState.from_store(json.loads(raw))

    @property
    def pending(self) -> int:
        return len(self._pending)

    # -- internals ----------------------------------------------------------------
    def _failed(self, op: str, exc: BaseException) -> None:
        metrics.REDIS_FAILURES.labels(**metrics.base(), op=op).inc()
        if self.healthy:
            log.error("redis %s failed (%s): sessions continue from memory; %d pending writes",
                      op, exc, len(self._pending))
        else:
            log.warning("redis %s failed again (%s); %d pending writes", op, exc, len(self._pending))
        self.healthy = False

    async def _flush_once(self) -> bool:
        ids = list(self._pending)
        versions = {sid: self._version.get(sid) for sid in ids}
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for sid in ids:
                    d = self._memory.get(sid)
                    if d is not None:
                        pipe.set(KEY.format(sid), json.dumps(d), ex=self.ttl_s)
                await pipe.execute()
        except Exception as exc:
            self._failed("write", exc)
            return False
        for sid in ids:
            # A session saved again while we wrote stays pending (its newer
            # snapshot is written on the next pass: save() set _wake).
            if self._version.get(sid) == versions[sid]:
                self._pending.discard(sid)
        if not self.healthy:
            log.info("redis is back: wrote back %d sessions", len(ids))
            self.healthy = True
        return True

    async def _flush_loop(self) -> None:
        backoff = 0.25
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._pending:
                continue
            if await self._flush_once():
                backoff = 0.25
            else:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                self._wake.set()
