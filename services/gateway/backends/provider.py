"""GrpcProvider: the app's backends over real gRPC channels. It owns the
routing pool, the gateway's view of the releases and the canary health
probe, and one background task that refreshes both every
``release_refresh_s`` (routing a session then reads only memory).

/healthz probes every address live (``health``); the app reports canary
addresses that do not serve without failing readiness (``canary_addresses``)."""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from services.gateway.backends import health
from services.gateway.backends.health import CanaryHealth
from services.gateway.backends.routing import BackendPool
from services.gateway.release_view import ReleaseView
from services.gateway.settings import GatewaySettings

log = logging.getLogger(__name__)


class GrpcProvider:
    def __init__(self, settings: GatewaySettings, faults: Any = None) -> None:
        """``faults``: a drill's FaultTable (services/gateway/faults), or None."""
        self.release = ReleaseView(settings.canary_percent, settings.redis_url, settings.redis_password())
        self.canary_health = CanaryHealth()
        self.pool = BackendPool(settings, self.release, self.canary_health, faults)
        self.refresh_s = settings.release_refresh_s
        self._watch: asyncio.Task | None = None

    async def start(self) -> None:
        """Read the weights once before the first session, then keep them fresh."""
        await self.refresh()
        self._watch = asyncio.create_task(self._watch_loop(), name="release-watch")

    async def refresh(self) -> None:
        await self.release.refresh()
        canary = {a: self.pool.channel(a) for addrs in self.pool.canary_addresses().values() for a in addrs}
        if canary:
            before = dict(self.canary_health.status)
            await self.canary_health.refresh(canary)
            for addr, status in self.canary_health.status.items():
                if before.get(addr, "SERVING") != status:
                    log.warning("canary %s is %s: its sessions go to stable while it does not serve"
                                if status != "SERVING" else "canary %s is %s again", addr, status)

    async def _watch_loop(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_s)
            try:
                await self.refresh()
            except Exception:
                log.exception("release/canary refresh failed; keeping the last view")

    def for_session(self, session_id: str, decided: dict[str, str] | None = None):
        return self.pool.for_session(session_id, decided)

    def canary_addresses(self) -> dict[str, list[str]]:
        return self.pool.canary_addresses()

    def release_status(self) -> dict[str, Any]:
        return self.release.status()

    async def health(self) -> dict[str, dict[str, str]]:
        chans = {svc: {a: self.pool.channel(a) for a in addrs}
                 for svc, addrs in self.pool.all_addresses().items()}
        return await health.check_all(chans)

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.wait([self._watch], timeout=2.0)
        await self.release.close()
        await self.pool.close()
