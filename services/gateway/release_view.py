"""The gateway's view of the releases (release/state.py): per service, the
canary weight new sessions are hashed against and whether the canary was
withdrawn (rolled back or aborted).

Read from Redis by one background task every ``release_refresh_s``, never per
session: creating a session reads only this cache. A service with no release
record uses the configured ``canary_percent`` (the behaviour before releases
existed). When Redis cannot be read, the last weights read stay in force (a
Redis blip must not move sessions between variants) and the failure is
counted; a gateway that never read them uses ``canary_percent``.

The weights, states and decision counts read here are what the gateway
exports as voice_release_* metrics, so dashboards and the rollback alert see
the weights the gateways actually route by."""
from __future__ import annotations

import logging
from typing import Any

from release.state import CANARY_WITHDRAWN, SERVICES, STATE_KEY, Release, parse_all
from services.gateway import metrics

log = logging.getLogger(__name__)


class ReleaseView:
    def __init__(self, default_percent: float, redis_url: str = "", password: str | None = None) -> None:
        self.default_percent = default_percent
        self.releases: dict[str, Release] = {}
        self.read_ok: bool | None = None      # None until the first read
        self._redis = None
        if redis_url:
            import redis.asyncio as aioredis

            self._redis = aioredis.from_url(redis_url, socket_connect_timeout=0.5, socket_timeout=1.0,
                                            **({"password": password} if password else {}))
        self.export()

    def weight(self, service: str) -> float:
        rel = self.releases.get(service)
        return rel.weight if rel is not None else self.default_percent

    def withdrawn(self, service: str) -> bool:
        """The canary was judged bad or pulled: no session, new or resumed, goes to it."""
        rel = self.releases.get(service)
        return rel is not None and rel.state in CANARY_WITHDRAWN

    def apply(self, releases: dict[str, Release]) -> None:
        """Take a fresh read (also what tests call to set weights)."""
        changed = {s: (r.state, r.weight) for s, r in releases.items()} != {
            s: (r.state, r.weight) for s, r in self.releases.items()}
        self.releases = releases
        if changed:
            log.info("release weights now %s", self.status())
        self.export()

    async def refresh(self) -> bool:
        if self._redis is None:
            return False
        try:
            raw = await self._redis.hgetall(STATE_KEY)
        except Exception as exc:
            metrics.REDIS_FAILURES.labels(**metrics.base(), op="release_read").inc()
            if self.read_ok is not False:
                log.warning("cannot read release weights (%s): keeping %s", exc, self.status())
            self.read_ok = False
            return False
        self.read_ok = True
        self.apply(parse_all(raw))
        return True

    def status(self) -> dict[str, Any]:
        """Per service: weight, state and where the weight came from (/healthz detail)."""
        out: dict[str, Any] = {}
        for svc in SERVICES:
            rel = self.releases.get(svc)
            out[svc] = ({"weight": rel.weight, "state": rel.state, "step": rel.step, "source": "redis"}
                        if rel is not None else
                        {"weight": self.default_percent, "state": "none", "source": "canary_percent"})
        return out

    def export(self) -> None:
        b = metrics.base()
        for svc in SERVICES:
            rel = self.releases.get(svc)
            metrics.RELEASE_WEIGHT.labels(**b, backend=svc).set(self.weight(svc))
            for state in metrics.RELEASE_STATES:
                metrics.RELEASE_STATE.labels(**b, backend=svc, state=state).set(
                    1.0 if (rel.state if rel is not None else "none") == state else 0.0)
        metrics.RELEASE_DECISIONS.set({svc: dict(rel.decisions) for svc, rel in self.releases.items()},
                                      {svc: dict(rel.last) for svc, rel in self.releases.items() if rel.last})

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
