"""The gateway's fault switch as a drill drives it: /admin/faults (set, clear)
and its /metrics (one metric's sum), with an admin key (runner.py)."""
from __future__ import annotations

from typing import Any

import httpx

from loadtests import probes


class Admin:
    """The gateway's /admin/faults, with an admin key."""

    def __init__(self, http_url: str, key: str) -> None:
        self._c = httpx.AsyncClient(base_url=http_url, headers={"Authorization": f"Bearer {key}"}, timeout=10)

    async def set(self, body: dict[str, Any]) -> str:
        """Set a fault; where it applies, as the gateway says: "fleet" (every
        gateway on its Redis) or "this gateway (why)"."""
        r = await self._c.post("/admin/faults", json=body)
        if r.status_code != 200:
            raise RuntimeError(f"/admin/faults refused the fault ({r.status_code}): {r.text}")
        reply = r.json()
        scope = reply.get("scope", "this gateway")
        return scope + (f" ({reply['why']})" if reply.get("why") else "")

    async def clear(self) -> None:
        try:
            await self._c.delete("/admin/faults")
        except httpx.HTTPError:
            pass      # the gateway is away (a restart): the faults end by themselves

    async def gauge(self, name: str) -> float | None:
        """The sum of a gateway metric's samples on /metrics (None if unreadable)."""
        try:
            text = (await self._c.get("/metrics")).text
        except httpx.HTTPError:
            return None
        try:
            series = probes.parse(text)
        except ValueError:
            return None
        values = [v for (n, _), v in series.items() if n == name]
        return sum(values) if values else None

    async def close(self) -> None:
        await self._c.aclose()
