"""Where releases, their decision events and the gateways' turn samples live:
``RedisReleaseStore`` in production, ``MemoryReleaseStore`` (same interface,
same compare-and-set rule) for tests and drills.

Redis layout (names in release/state.py):
- STATE_KEY, a hash: service -> Release JSON; saves are compare-and-set on
  ``rev`` (a Lua script), so a stale writer loses instead of overwriting.
- EVENTS_KEY, a stream (capped): one JSON decision event per entry.
- SAMPLES_KEY, a stream (capped, SAMPLES_MAXLEN): one Sample per ended turn,
  written by the gateways (services/gateway/store.py)."""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Protocol

from release.samples import SAMPLES_MAXLEN, Sample
from release.state import EVENTS_KEY, SAMPLES_KEY, STATE_KEY, Release, parse_all

EVENTS_MAXLEN = 10_000
# Samples are filtered on their own timestamp (the gateway's wall clock); the
# stream id (Redis's clock) only narrows the read, with this much slack.
_ID_SLACK_S = 120.0

# Compare-and-set of one field of the state hash on the JSON's rev.
_CAS = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
local rev = 0
if cur then rev = tonumber(cjson.decode(cur)['rev']) or 0 end
if rev ~= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
"""


class ReleaseStore(Protocol):
    async def load_all(self) -> dict[str, Release]: ...

    async def save(self, rel: Release) -> bool:
        """Write ``rel`` if the stored record still has ``rel.rev`` (or none
        exists and rel.rev is 0); on success rel.rev is incremented."""

    async def add_event(self, event: dict[str, Any]) -> None: ...

    async def events(self, service: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The latest events, oldest first."""

    async def add_samples(self, samples: list[Sample]) -> None: ...

    async def samples(self, since: float, until: float) -> list[Sample]: ...

    async def close(self) -> None: ...


class MemoryReleaseStore:
    def __init__(self) -> None:
        self.records: dict[str, str] = {}
        self.event_log: list[dict[str, Any]] = []
        self.sample_log: list[Sample] = []

    async def load_all(self) -> dict[str, Release]:
        return parse_all(self.records)

    async def save(self, rel: Release) -> bool:
        cur = self.records.get(rel.service)
        if (Release.from_json(cur).rev if cur else 0) != rel.rev:
            return False
        self.records[rel.service] = dataclasses.replace(rel, rev=rel.rev + 1).to_json()
        rel.rev += 1
        return True

    async def add_event(self, event: dict[str, Any]) -> None:
        self.event_log.append(json.loads(json.dumps(event)))

    async def events(self, service: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        return [e for e in self.event_log if service in (None, e.get("service"))][-limit:]

    async def add_samples(self, samples: list[Sample]) -> None:
        self.sample_log.extend(samples)

    async def samples(self, since: float, until: float) -> list[Sample]:
        return [s for s in self.sample_log if since <= s.ts <= until]

    async def close(self) -> None:
        pass


class RedisReleaseStore:
    def __init__(self, url: str, password: str | None = None) -> None:
        import redis.asyncio as aioredis

        self.redis = aioredis.from_url(url, socket_connect_timeout=1.0, socket_timeout=5.0,
                                       **({"password": password} if password else {}))
        self._cas = self.redis.register_script(_CAS)

    async def load_all(self) -> dict[str, Release]:
        return parse_all(await self.redis.hgetall(STATE_KEY))

    async def save(self, rel: Release) -> bool:
        raw = dataclasses.replace(rel, rev=rel.rev + 1).to_json()
        ok = await self._cas(keys=[STATE_KEY], args=[rel.service, rel.rev, raw])
        if ok:
            rel.rev += 1
        return bool(ok)

    async def add_event(self, event: dict[str, Any]) -> None:
        await self.redis.xadd(EVENTS_KEY, {"e": json.dumps(event)}, maxlen=EVENTS_MAXLEN, approximate=True)

    async def events(self, service: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        # Newest first from Redis; a service filter may need to look further back.
        for _id, fields in await self.redis.xrevrange(EVENTS_KEY, count=limit if service is None else EVENTS_MAXLEN):
            e = json.loads(fields[b"e"])
            if service in (None, e.get("service")):
                out.append(e)
                if len(out) >= limit:
                    break
        return out[::-1]

    async def add_samples(self, samples: list[Sample]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for s in samples:
                pipe.xadd(SAMPLES_KEY, {"d": s.encode()}, maxlen=SAMPLES_MAXLEN, approximate=True)
            await pipe.execute()

    async def samples(self, since: float, until: float) -> list[Sample]:
        lo = max(0, int((since - _ID_SLACK_S) * 1000))
        out = []
        for _id, fields in await self.redis.xrange(SAMPLES_KEY, min=lo, max="+"):
            try:
                s = Sample.decode(fields[b"d"])
            except (KeyError, ValueError, TypeError):
                continue   # a foreign or corrupt entry is not a turn
            if since <= s.ts <= until:
                out.append(s)
        return out

    async def close(self) -> None:
        await self.redis.aclose()
