"""Session state in Redis, with memory as the fallback.

Every change of a session's config or items is saved to memory at once and
marked pending; one flusher task writes pending sessions to Redis (with the
session TTL). If Redis is down, sessions carry on from memory; each failed
operation is logged and counted (voice_gateway_redis_failures_total{op}), the
flusher retries with backoff, and everything pending is written back when
Redis returns. A session id resumes from Redis (another process wrote it) or,
failing that, from this process's memory. A drill's ``redis`` fault
(services/gateway/faults) fails the Redis operations here as an outage would.

The memory fallback is bounded: at most MEMORY_SESSIONS sessions, none kept
past the retention (``ttl_s`` since its last change, as in Redis). A session
dropped from memory before Redis had it is lost: that is counted
(voice_gateway_sessions_lost_total{reason}) and logged, never silent.

A Redis that restarted empty (its run_id changed) is given back every session
still in memory: they are all written again, so history survives a Redis
restart without persistence as it survives an outage.

The same flusher appends the release samples of ended turns (one compact
entry per turn, release/samples.py) to a capped Redis stream for the release
judge: the turn only queues it (bounded; beyond SAMPLE_QUEUE unsent samples
the oldest are dropped), never waits for Redis."""
from __future__ import annotations

import asyncio
import collections
import functools
import json
import logging
import time
from typing import Any, Callable

from common import redact
from release.samples import SAMPLES_MAXLEN, Sample
from release.state import SAMPLES_KEY
from services.gateway import metrics
from services.gateway.faults.calls import store_fault
from services.gateway.session import SessionState

log = logging.getLogger(__name__)
KEY = "voice:session:{}"
MEMORY_SESSIONS = 2000
SAMPLE_QUEUE = 1000
RUN_ID_CHECK_S = 10.0     # how often (at most) a flush asks Redis whether it restarted


# The fields of a stored item that hold what people said.
SPOKEN = frozenset({"text", "transcript", "output", "arguments"})


@functools.lru_cache(maxsize=1024)
def _redacted(text: str) -> str:
    # Saves repeat the whole conversation: each text is redacted once, not per save.
    return redact.redact(text)


def redact_stored(d: dict[str, Any]) -> dict[str, Any]:
    """A stored session with personal data in what was said replaced
    (common/redact.py): [CARD], [EMAIL], [PHONE], [IBAN], [ADDRESS]."""
    def clean(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: (_redacted(x) if k in SPOKEN and isinstance(x, str) else clean(x)) for k, x in v.items()}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v
    return {**d, "items": clean(d.get("items", []))}


class SessionStore:
    def __init__(self, url: str, ttl_s: int, redact_pii: bool = False, password: str | None = None,
                 faults: Any = None, now: Callable[[], float] = time.monotonic) -> None:
        self.url, self.ttl_s, self.redact_pii = url, ttl_s, redact_pii
        self.faults, self._now = faults, now
        self._saved_at: dict[str, float] = {}
        self._run_id: str | None = None
        self._run_id_checked = float("-inf")
        self._redis = None
        if url:
            import redis.asyncio as aioredis

            self._redis = aioredis.from_url(url, socket_connect_timeout=0.5, socket_timeout=1.0,
                                            **({"password": password} if password else {}))
        self._memory: collections.OrderedDict[str, dict[str, Any]] = collections.OrderedDict()
        self._pending: set[str] = set()
        self._version: dict[str, int] = {}
        self._deleted: set[str] = set()   # erased here: later saves of a live session are dropped
        self.samples: collections.deque[str] = collections.deque(maxlen=SAMPLE_QUEUE)  # encoded, unsent
        self._wake = asyncio.Event()
        # A flush and a delete never interleave: a flush that snapshotted a
        # session must not write it back after its deletion.
        self._io = asyncio.Lock()
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
        if (self._pending or self.samples) and self._redis is not None:
            await self._flush_once()  # last chance; failures are counted and logged
        if self._redis is not None:
            await self._redis.aclose()

    # -- API ----------------------------------------------------------------------
    def save(self, state: SessionState) -> None:
        if state.id in self._deleted:
            return
        d = state.to_store()
        self._memory[state.id] = redact_stored(d) if self.redact_pii else d
        self._memory.move_to_end(state.id)
        self._version[state.id] = self._version.get(state.id, 0) + 1
        now = self._now()
        self._saved_at[state.id] = now
        self._bound_memory(now)
        if self._redis is not None:
            self._pending.add(state.id)
            self._export_pending()
            self._wake.set()

    def add_sample(self, sample: Sample) -> None:
        """Queue one ended turn's release sample for the samples stream."""
        self.samples.append(sample.encode())
        metrics.QUEUE_DEPTH.labels(**metrics.base(), queue="release_samples").set(len(self.samples))
        if self._redis is not None:
            self._wake.set()

    async def load(self, session_id: str) -> SessionState | None:
        if session_id in self._pending or self._redis is None:
            d = self._memory.get(session_id)
            return SessionState.from_store(d) if d else None
        try:
            await self._injected()
            raw = await self._redis.get(KEY.format(session_id))
        except Exception as exc:
            self._failed("read", exc)
            d = self._memory.get(session_id)
            return SessionState.from_store(d) if d else None
        if raw is None:
            d = self._memory.get(session_id)
            return SessionState.from_store(d) if d else None
        return SessionState.from_store(json.loads(raw))

    async def delete(self, session_id: str) -> None:
        """Erase a session at once, from memory and Redis; a connection still on
        it carries on without being stored again. Raises if Redis cannot confirm
        the deletion (the caller must not report success)."""
        self._deleted.add(session_id)
        while len(self._deleted) > MEMORY_SESSIONS:
            self._deleted.pop()
        self._memory.pop(session_id, None)
        self._saved_at.pop(session_id, None)
        self._pending.discard(session_id)
        self._version.pop(session_id, None)
        if self._redis is not None:
            async with self._io:
                try:
                    await self._injected()
                    await self._redis.delete(KEY.format(session_id))
                except Exception as exc:
                    self._failed("delete", exc)
                    raise

    @property
    def pending(self) -> int:
        return len(self._pending)

    def _export_pending(self) -> None:
        metrics.STORE_PENDING.labels(**metrics.base()).set(len(self._pending))

    # -- internals ----------------------------------------------------------------
    def _bound_memory(self, now: float) -> None:
        """Drop the oldest sessions beyond MEMORY_SESSIONS or past retention
        (the memory is in last-change order); count those Redis never got."""
        while self._memory:
            old = next(iter(self._memory))
            full = len(self._memory) > MEMORY_SESSIONS
            if not full and now - self._saved_at.get(old, now) < self.ttl_s:
                return
            self._memory.popitem(last=False)
            self._saved_at.pop(old, None)
            self._version.pop(old, None)
            if old in self._pending:
                self._pending.discard(old)
                reason = "memory_full" if full else "retention"
                metrics.SESSIONS_LOST.labels(**metrics.base(), reason=reason).inc()
                log.error("session %s lost: dropped from memory (%s) before Redis could store it", old, reason)

    async def _restarted(self) -> bool:
        """After a write: whether Redis restarted since the last look (its
        run_id changed; without persistence it came back empty). Asked at
        most every RUN_ID_CHECK_S, and after each outage; a Redis that does
        not allow INFO is not asked again."""
        now = self._now()
        if self._run_id == "" or (self.healthy and now - self._run_id_checked < RUN_ID_CHECK_S):
            return False
        self._run_id_checked = now
        if self._redis is None:
            return False
        try:
            run_id = str((await self._redis.info("server")).get("run_id", ""))
        except Exception as exc:  # noqa: BLE001 - e.g. INFO denied by an ACL: the check is a bonus
            log.warning("redis INFO failed (%s): a Redis restarted empty will not be refilled", exc)
            self._run_id = ""
            return False
        old, self._run_id = self._run_id, run_id
        if old is None or old == run_id:
            return False
        log.warning("redis restarted (run_id %s -> %s): writing back the %d sessions in memory",
                    old, run_id, len(self._memory))
        metrics.REDIS_FAILURES.labels(**metrics.base(), op="restart").inc()
        return True

    async def _injected(self) -> None:
        """A drill's redis fault, if one is set (a test of ``active`` otherwise)."""
        if self.faults is not None and self.faults.active:
            await store_fault(self.faults)

    def _failed(self, op: str, exc: BaseException) -> None:
        metrics.REDIS_FAILURES.labels(**metrics.base(), op=op).inc()
        if self.healthy:
            log.error("redis %s failed (%s): sessions continue from memory; %d pending writes",
                      op, exc, len(self._pending))
        else:
            log.warning("redis %s failed again (%s); %d pending writes", op, exc, len(self._pending))
        self.healthy = False

    async def _flush_once(self) -> bool:
        async with self._io:
            return await self._flush_locked()

    async def _flush_locked(self) -> bool:
        redis = self._redis
        assert redis is not None, "the flusher runs only with a Redis (start())"
        ids = list(self._pending)
        versions = {sid: self._version.get(sid) for sid in ids}
        # Snapshots in memory are never changed after save() (it stores new
        # ones), so they are serialised off the event loop: a session may hold
        # megabytes of text (services/gateway/limits.py).
        snapshots = {sid: self._memory.get(sid) for sid in ids}
        payloads = await asyncio.to_thread(
            lambda: {sid: json.dumps(d) for sid, d in snapshots.items() if d is not None})
        samples = list(self.samples)
        self.samples.clear()
        try:
            await self._injected()
            async with redis.pipeline(transaction=False) as pipe:
                for sid, raw in payloads.items():
                    pipe.set(KEY.format(sid), raw, ex=self.ttl_s)
                for raw in samples:
                    pipe.xadd(SAMPLES_KEY, {"d": raw}, maxlen=SAMPLES_MAXLEN, approximate=True)
                await pipe.execute()
        except Exception as exc:
            # Back in front of newer ones, as many as fit: the oldest are the ones dropped.
            room = SAMPLE_QUEUE - len(self.samples)
            if room > 0:
                self.samples.extendleft(reversed(samples[-room:]))
            self._failed("write", exc)
            return False
        metrics.QUEUE_DEPTH.labels(**metrics.base(), queue="release_samples").set(len(self.samples))
        for sid in ids:
            # A session saved again while we wrote stays pending (its newer
            # snapshot is written on the next pass: save() set _wake).
            if self._version.get(sid) == versions[sid]:
                self._pending.discard(sid)
        if await self._restarted():
            self._pending |= set(self._memory)
            self._wake.set()
        self._export_pending()
        if not self.healthy:
            log.info("redis is back: wrote back %d sessions", len(ids))
            self.healthy = True
        return True

    async def _flush_loop(self) -> None:
        backoff = 0.25
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._pending and not self.samples:
                continue
            if await self._flush_once():
                backoff = 0.25
            else:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                self._wake.set()
