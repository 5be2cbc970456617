"""Faults shared by every gateway on one Redis, so a drill against a fleet
(several gateway pods behind one Service, an HPA) breaks all of them, not
only the pod its admin call happened to reach.

``/admin/faults`` on any gateway writes the fault to the Redis hash
``voice:faults`` (one field per service, as the table holds one fault per
service) besides its own table; every gateway reads the hash every
``refresh_s`` and takes it as the set of shared faults (``FaultTable.sync``).
A fault ends by itself everywhere: its end is stored as wall-clock time, each
gateway converts it to its own clock. Ending one (DELETE) removes it from the
hash, so the others end it at their next read.

When Redis cannot be written the fault is set on this gateway only, and the
admin response says so (``"scope": "this gateway"``); a fault set that way
is never removed by a read of the hash. When Redis cannot be read, the last
shared faults stay until they end by themselves. Gateways without Redis (the
in-memory store) and without admin keys have no shared faults at all."""
from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from typing import Any, Callable

from services.gateway.faults.table import KINDS, SERVICES, Fault, FaultTable

log = logging.getLogger(__name__)
KEY = "voice:faults"


def to_record(f: Fault, clock_now: float, wall_now: float) -> str:
    """A fault as stored: its end in wall-clock seconds."""
    d = dataclasses.asdict(f)
    d["until_wall"] = wall_now + (d.pop("until") - clock_now)
    d.pop("shared", None)
    return json.dumps(d, sort_keys=True)


def from_record(raw: str | bytes, clock_now: float, wall_now: float) -> Fault | None:
    """The stored fault on this gateway's clock; None if unreadable or over."""
    try:
        d = json.loads(raw)
        if not isinstance(d, dict):
            raise ValueError("not a JSON object")
        until = clock_now + (float(d.pop("until_wall")) - wall_now)
        f = Fault(**{**d, "until": until, "shared": True})
    except (ValueError, TypeError, KeyError) as exc:
        log.warning("ignoring an unreadable shared fault %r (%s)", raw[:200], exc)
        return None
    if f.service not in SERVICES or f.kind not in KINDS:
        log.warning("ignoring a shared fault of unknown service or kind: %r", raw[:200])
        return None
    return f if until > clock_now else None


class SharedFaults:
    def __init__(self, table: FaultTable, redis: Any, refresh_s: float = 1.0,
                 wall: Callable[[], float] = time.time) -> None:
        self.table, self._redis, self.refresh_s, self._wall = table, redis, refresh_s, wall
        self.read_ok: bool | None = None

    @classmethod
    def connect(cls, table: FaultTable, redis_url: str, password: str | None,
                refresh_s: float = 1.0) -> "SharedFaults":
        import redis.asyncio as aioredis

        client = aioredis.from_url(redis_url, socket_connect_timeout=0.5, socket_timeout=1.0,
                                   **({"password": password} if password else {}))
        return cls(table, client, refresh_s)

    async def publish(self, fault: Fault) -> str | None:
        """Write ``fault`` for every gateway; None when done, else why not."""
        # No TTL: at most one record per service, and a reader skips the ended ones.
        try:
            await self._redis.hset(KEY, fault.service, to_record(fault, self.table.clock.now(), self._wall()))
        except Exception as exc:
            return f"Redis unreachable ({exc})"
        return None

    async def withdraw(self, service: str | None) -> str | None:
        """End one service's shared fault, or all; None when done, else why not."""
        try:
            if service is None:
                await self._redis.delete(KEY)
            else:
                await self._redis.hdel(KEY, service)
        except Exception as exc:
            return f"Redis unreachable ({exc})"
        return None

    async def refresh(self) -> bool:
        read_at = self.table.clock.now()
        try:
            raw = await self._redis.hgetall(KEY)
        except Exception as exc:
            if self.read_ok is not False:
                log.warning("cannot read shared faults (%s): keeping the last ones read", exc)
            self.read_ok = False
            return False
        self.read_ok = True
        now, wall = self.table.clock.now(), self._wall()
        faults = [f for f in (from_record(v, now, wall) for v in raw.values()) if f is not None]
        self.table.sync(faults, read_at)
        return True

    async def run(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:      # a bug in one read must not end the fleet's faults for good
                log.exception("reading the shared faults failed; trying again in %.0f s", self.refresh_s)
            await asyncio.sleep(self.refresh_s)

    async def close(self) -> None:
        await self._redis.aclose()
