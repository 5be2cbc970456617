"""Did the panels a drill sends on-call to actually show the fault?

A scenario names the panels to look at ("Voice / stage / gateway: Backend
failures") and, for some of them, which way the fault moves them ("up": a
failure rate, a stage's p95, a burn rate; "down": components up) and on
which line (the legend on-call reads: "asr", "failed", "asr_final"). After
the drill, each such panel's queries (the dashboard's own PromQL and legends,
from dashboards/boards.py) are read from Prometheus over the minutes before
the fault and over the fault and its recovery, line by line, as the panel
would draw them:

  up    the line's (some line's) highest value during the fault is at least
        RISE times its highest before (a line absent before counts as 0: a
        new `failed` outcome or error code is the fault showing);
  down  the line's (some line's) lowest value during the fault is below its
        lowest before.

A panel that does not move is reported with its numbers: a runbook that
sends on-call to a flat panel is a bug in the runbook (or the panel)."""
from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, NamedTuple

import httpx

from dashboards.boards import boards

RISE = 1.5
BEFORE_S = 120.0        # the baseline window before the fault
STEP_S = 1.0


class Move(NamedTuple):
    panel: str                 # "dashboard title: panel title"
    way: str                   # "up" | "down"
    line: str = ""             # the legend of the line that must move ("" = any line of the panel)


@dataclasses.dataclass
class PanelSeen:
    panel: str                 # "dashboard: panel"
    move: str                  # "up" | "down"
    shown: bool
    on: str = ""               # the line (legend) that moved most, or why none did
    before: float | None = None
    during: float | None = None

    def line(self) -> str:
        def v(x: float | None) -> str:
            return "no data" if x is None else f"{x:.3g}"
        verdict = "showed it" if self.shown else "DID NOT SHOW IT"
        return (f"  panel {self.panel}: {verdict} ({self.move}: {self.on or '-'} "
                f"{v(self.before)} before, {v(self.during)} during)")


def panel_targets(ref: str) -> list[tuple[str, str]]:
    """(PromQL, legend format) of each query behind "dashboard title: panel title"."""
    board_title, _, panel_title = ref.partition(": ")
    for board in boards().values():
        if board["title"] == board_title:
            for p in board["panels"]:
                if p["title"] == panel_title and p.get("targets"):
                    return [(tg["expr"], tg.get("legendFormat", "")) for tg in p["targets"]]
    raise KeyError(f"no panel {ref!r} on the dashboards (dashboards/boards.py)")


def legend(fmt: str, labels: dict[str, str]) -> str:
    """A line's name as Grafana draws it: {{label}} filled in."""
    if fmt in ("", "__auto"):
        return ",".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "__name__") or "{}"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt)


async def _range(c: httpx.AsyncClient, expr: str, fmt: str, start: float, end: float) -> dict[str, list[float]]:
    """Line (its legend) -> values in [start, end], NaN left out."""
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
            out.setdefault(legend(fmt, s["metric"]), []).extend(vals)
    return out


def judge(panel: str, move: str, before: dict[str, list[float]], during: dict[str, list[float]],
          line: str = "") -> PanelSeen:
    """The pure rule (see the module doc), over one panel's lines (or only
    the one named ``line``)."""
    best: tuple[tuple[bool, float], PanelSeen] | None = None
    for key, vals in during.items():
        if line and key != line:
            continue
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
    return PanelSeen(panel, move, False, f"no line {line!r}" if line else "no line", None, None)


async def panels_seen(prom_url: str, moves: tuple[Move, ...], fault_start_wall: float,
                      end_wall: float) -> list[PanelSeen]:
    """Each move: did its panel (line) show the fault between
    ``fault_start_wall`` and ``end_wall``, against the BEFORE_S before it?"""
    out = []
    async with httpx.AsyncClient(base_url=prom_url, timeout=10) as c:
        for mv in moves:
            before: dict[str, list[float]] = {}
            during: dict[str, list[float]] = {}
            for expr, fmt in panel_targets(mv.panel):
                for k, v in (await _range(c, expr, fmt, fault_start_wall - BEFORE_S,
                                          fault_start_wall - STEP_S)).items():
                    before.setdefault(k, []).extend(v)
                for k, v in (await _range(c, expr, fmt, fault_start_wall, end_wall)).items():
                    during.setdefault(k, []).extend(v)
            out.append(judge(mv.panel, mv.way, before, during, mv.line))
    return out


def as_dict(seen: list[PanelSeen]) -> list[dict[str, Any]]:
    return [dataclasses.asdict(s) for s in seen]
