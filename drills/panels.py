"""Did the panels a drill sends on-call to actually show the fault?

A scenario names the panels to look at ("Voice / stage / gateway: Backend
failures") and, for some of them, which way the fault moves them ("up": a
failure rate, a stage's p95, a burn rate; "down": components up). After the
drill, each such panel's queries (the dashboard's own PromQL, from
dashboards/boards.py) are read from Prometheus over the minutes before the
fault and over the fault and its recovery, series by series, as the panel
would draw them:

  up    some series' highest value during the fault is at least RISE times
        its highest before (a series absent before counts as 0: a new
        `failed` outcome or error code is the fault showing);
  down  some series' lowest value during the fault is below its lowest before.

A panel that does not move is reported with its numbers: a runbook that
sends on-call to a flat panel is a bug in the runbook (or the panel)."""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import httpx

from dashboards.boards import boards
from dashboards.grafana import exprs

RISE = 1.5
BEFORE_S = 120.0        # the baseline window before the fault
STEP_S = 2.0


@dataclasses.dataclass
class PanelSeen:
    panel: str                 # "dashboard: panel"
    move: str                  # "up" | "down"
    shown: bool
    series: str = ""           # the series that moved most (its labels), or why none did
    before: float | None = None
    during: float | None = None

    def line(self) -> str:
        def v(x: float | None) -> str:
            return "no data" if x is None else f"{x:.3g}"
        verdict = "showed it" if self.shown else "DID NOT SHOW IT"
        return (f"  panel {self.panel}: {verdict} ({self.move}: {self.series or '-'} "
                f"{v(self.before)} before, {v(self.during)} during)")


def panel_exprs(ref: str) -> list[str]:
    """The PromQL behind "dashboard title: panel title"."""
    board_title, _, panel_title = ref.partition(": ")
    for board in boards().values():
        if board["title"] == board_title:
            found = [e for title, e in exprs(board) if title == panel_title]
            if found:
                return found
    raise KeyError(f"no panel {ref!r} on the dashboards (dashboards/boards.py)")


async def _range(c: httpx.AsyncClient, expr: str, start: float, end: float) -> dict[str, list[float]]:
    """Series (labels as text) -> values in [start, end], NaN left out."""
    if end <= start:
        return {}
    r = await c.get("/api/v1/query_range", params={"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}",
                                                    "step": f"{STEP_S:g}"})
    body = r.json()
    if body.get("status") != "success":
        raise RuntimeError(f"Prometheus refused a panel query: {body.get('error')} in {expr}")
    out: dict[str, list[float]] = {}
    for s in body["data"]["result"]:
        vals = [float(v) for _, v in s["values"] if not math.isnan(float(v))]
        if vals:
            out[",".join(f"{k}={v}" for k, v in sorted(s["metric"].items())) or "{}"] = vals
    return out


def judge(panel: str, move: str, before: dict[str, list[float]], during: dict[str, list[float]]) -> PanelSeen:
    """The pure rule (see the module doc), over one panel's series."""
    best: tuple[tuple[bool, float], PanelSeen] | None = None
    for key, vals in during.items():
        was = before.get(key)
        if move == "up":
            b, d = (max(was) if was else 0.0), max(vals)
            shown, margin = d > 0 and d >= RISE * b and d > b, d - b
        elif move == "down":
            if not was:
                continue
            b, d = min(was), min(vals)
            shown, margin = d < b, b - d
        else:
            raise ValueError(f"a panel moves up or down, not {move!r}")
        if best is None or (shown, margin) > best[0]:
            best = ((shown, margin), PanelSeen(panel, move, shown, key, b, d))
    if best is not None:
        return best[1]
    return PanelSeen(panel, move, False, "no series during the fault")


async def panels_seen(prom_url: str, moves: tuple[tuple[str, str], ...], fault_start_wall: float,
                      end_wall: float) -> list[PanelSeen]:
    """Each (panel, move): did it show the fault between ``fault_start_wall``
    and ``end_wall`` against the BEFORE_S before it?"""
    out = []
    async with httpx.AsyncClient(base_url=prom_url, timeout=10) as c:
        for panel, move in moves:
            before: dict[str, list[float]] = {}
            during: dict[str, list[float]] = {}
            for i, expr in enumerate(panel_exprs(panel)):
                # Queries of one panel are told apart (a stat's "up" and "of").
                for k, v in (await _range(c, expr, fault_start_wall - BEFORE_S, fault_start_wall - STEP_S)).items():
                    before[f"q{i}:{k}"] = v
                for k, v in (await _range(c, expr, fault_start_wall, end_wall)).items():
                    during[f"q{i}:{k}"] = v
            out.append(judge(panel, move, before, during))
    return out


def as_dict(seen: list[PanelSeen]) -> list[dict[str, Any]]:
    return [dataclasses.asdict(s) for s in seen]
