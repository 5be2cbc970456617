"""Which of a drill's alerts went pending and firing, and when: polled from
Prometheus' /api/v1/alerts while the fault lasts, completed from its ALERTS
series afterwards (an alert pending only for the second or two of a quick
restart can fall between two polls). Pending is the alert's own activeAt
(or its first ALERTS sample); firing is when a poll first saw it firing (or
its first firing ALERTS sample): each to within a second."""
from __future__ import annotations

import time

import httpx


class AlertWatch:
    """Polls Prometheus' /api/v1/alerts for the scenario's alerts."""

    def __init__(self, prom_url: str, names: tuple[str, ...], since_wall: float,
                 labels: dict[str, str] | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        """``labels``: only alerts carrying these (a release drill: its backend).
        ``transport``: a scripted Prometheus, for tests."""
        self._c = httpx.AsyncClient(base_url=prom_url, timeout=5, transport=transport)
        self.names, self.since, self.labels = names, since_wall, labels or {}
        self.pending_at: float | None = None      # wall time (the alert's activeAt)
        self.firing_at: float | None = None       # wall time first seen firing
        self.alert: str | None = None
        self.cleared_at: float | None = None
        self.before: str | None = None            # one of them was already active at the fault's start
        self.before_cleared_at: float | None = None   # wall time that activation was seen over

    async def active(self) -> str | None:
        """One of the alerts pending or firing now, whenever it began (None:
        none). Raises what httpx, a missing key or bad JSON raise when
        Prometheus cannot be read: not knowing is not "quiet"."""
        named = await self._named()
        return str(named[0]["labels"]["alertname"]) if named else None

    async def _named(self) -> list[dict]:
        """The scenario's alerts among Prometheus' active ones (raises when unreadable)."""
        alerts = (await self._c.get("/api/v1/alerts")).json()["data"]["alerts"]
        return [a for a in alerts if a["labels"].get("alertname") in self.names
                and all(a["labels"].get(k) == v for k, v in self.labels.items())]

    async def poll(self) -> None:
        try:
            named = await self._named()
        except (httpx.HTTPError, KeyError, ValueError):
            return
        now = time.time()
        mine = [a for a in named if _wall(a.get("activeAt")) >= self.since - 1]
        old = [a for a in named if _wall(a.get("activeAt")) < self.since - 1]
        if old and self.before is None:
            self.before = old[0]["labels"]["alertname"]
        if self.before is not None and not old and self.before_cleared_at is None:
            self.before_cleared_at = now
        for a in mine:
            if self.pending_at is None:
                self.pending_at, self.alert = _wall(a["activeAt"]), a["labels"]["alertname"]
            if a["state"] == "firing" and self.firing_at is None:
                self.firing_at = now
        if self.pending_at is not None and not mine and self.cleared_at is None:
            self.cleared_at = now

    async def history(self, end_wall: float) -> None:
        """What polling missed (an alert pending for a second or two, as
        during a quick restart): Prometheus' own ALERTS series since the fault."""
        if self.pending_at is not None and self.firing_at is not None:
            return
        sel = ",".join([f'alertname=~"{"|".join(self.names)}"'] + [f'{k}="{v}"' for k, v in self.labels.items()])
        try:
            body = (await self._c.get("/api/v1/query_range", params={
                "query": f"ALERTS{{{sel}}}", "start": f"{self.since - 5:.3f}", "end": f"{end_wall:.3f}",
                "step": "1"})).json()
            series = body["data"]["result"]
        except (httpx.HTTPError, KeyError, ValueError):
            return
        # One activation of an alert is a pending series, then a firing one
        # (an alert without `for:` fires at once: a firing series only), sampled
        # at every step of the query's grid (since - 5 + k s) while it lasts: it
        # began at the first sample of its unbroken run in either state. The
        # first grid sample after an activation is at or after it, so a run
        # whose first sample is before the fault's start began before it, even
        # when it turned to firing after (as poll()'s activeAt says); one that
        # ended before the fault and began again during it is this fault's.
        runs: dict[tuple, list[float]] = {}
        for s in series:
            runs.setdefault(_identity(s["metric"]), []).extend(float(t) for t, _ in s["values"])
        began = {key: _run_starts(ts) for key, ts in runs.items()}
        for s in series:
            key, name = _identity(s["metric"]), s["metric"]["alertname"]
            starts, times = began[key], [float(t) for t, _ in s["values"]]
            held = [t for t in runs[key] if starts[t] < self.since <= t]     # active at the fault's start
            if held:
                self.before = self.before or name
                last = max(t for t in runs[key] if starts[t] == starts[held[0]])
                if self.before_cleared_at is None and last < end_wall - 1.5:
                    self.before_cleared_at = last + 1.0
            mine = [t for t in times if starts[t] >= self.since]
            if not mine:
                continue          # active before the fault only: not this fault's detection
            first = min(mine)
            if self.pending_at is None or starts[first] < self.pending_at:
                self.pending_at, self.alert = starts[first], name       # the activation's start
            if s["metric"].get("alertstate") == "firing" and (self.firing_at is None or first < self.firing_at):
                self.firing_at, self.alert = first, self.alert or name

    async def close(self) -> None:
        await self._c.aclose()


def _identity(metric: dict[str, str]) -> tuple:
    """An alert's labels without its state: its pending and firing series share them."""
    return tuple(sorted((k, v) for k, v in metric.items() if k != "alertstate"))


def _run_starts(times: list[float], gap_s: float = 1.5) -> dict[float, float]:
    """Each sample time -> the first time of its run (samples less than ``gap_s`` apart)."""
    out: dict[float, float] = {}
    start = prev = -float("inf")
    for t in sorted(set(times)):
        if t - prev > gap_s:
            start = t
        out[t], prev = start, t
    return out


def _wall(rfc3339: str | None) -> float:
    if not rfc3339:
        return 0.0
    from datetime import datetime

    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()
