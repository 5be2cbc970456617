"""Wait until Prometheus holds what happened up to a moment: every active
target scraped after it, then every rule group evaluated after that scrape.

Why: a drill reads its panels when the first good turn after the fault has
come. With the test's 1 s scrapes Prometheus already has it all; with
production's 15 s scrapes and 30 s evaluation it may not: a gateway
restarted 9 s before was in no sample yet, and the *Restarts* panel was
read flat (gateway-restart with production rules, 2026-12-05). So the
panels are read once Prometheus has caught up, at most ``timeout_s`` later
(then they are read anyway, and a flat panel says so)."""
from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Awaitable, Callable

import httpx

CATCH_UP_S = 90.0    # the longest a drill waits for Prometheus before reading anyway


def _wall(stamp: str) -> float:
    """Prometheus' RFC 3339 time (nanoseconds, "Z") as epoch seconds; 0 for its zero time."""
    if not stamp or stamp.startswith("0001-"):
        return 0.0
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


async def _stamps(c: httpx.AsyncClient, path: str, pick: Callable[[dict], list[str]]) -> list[float]:
    body = (await c.get(path)).json()
    if body.get("status") != "success":
        raise RuntimeError(f"Prometheus refused {path}: {body.get('error')}")
    return [_wall(s) for s in pick(body["data"])]


def _scrapes(data: dict) -> list[str]:
    return [t.get("lastScrape", "") for t in data.get("activeTargets", [])]


def _evaluations(data: dict) -> list[str]:
    return [g.get("lastEvaluation", "") for g in data.get("groups", [])]


async def caught_up(prom_url: str, since: float, timeout_s: float = CATCH_UP_S, *,
                    transport: httpx.AsyncBaseTransport | None = None,
                    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                    clock: Callable[[], float] = time.monotonic) -> bool:
    """True once every target was scraped after ``since`` (epoch s) and every
    rule group evaluated after the last of those scrapes; False at the timeout."""
    deadline = clock() + timeout_s
    async with httpx.AsyncClient(base_url=prom_url, timeout=10, transport=transport) as c:
        async def all_after(path: str, pick: Callable[[dict], list[str]], after: float) -> list[float] | None:
            while True:
                try:
                    stamps = await _stamps(c, path, pick)
                except (httpx.HTTPError, ValueError, KeyError, RuntimeError):
                    stamps = []
                if stamps and min(stamps) > after:
                    return stamps
                if clock() >= deadline:
                    return None
                await sleep(1.0)

        scrapes = await all_after("/api/v1/targets?state=active", _scrapes, since)
        # Recording rules and alerts read the samples: an evaluation after the newest of those scrapes.
        return scrapes is not None and await all_after("/api/v1/rules", _evaluations, max(scrapes)) is not None
