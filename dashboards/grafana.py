"""Small builders for Grafana dashboard JSON (schema 39): panels, targets,
rows and a grid that places panels left to right. Only what our boards use;
every panel queries the one provisioned Prometheus datasource by fixed uid."""
from __future__ import annotations

import dataclasses
from typing import Any

DATASOURCE_UID = "voice-prometheus"
DATASOURCE = {"type": "prometheus", "uid": DATASOURCE_UID}
GRID_WIDTH = 24


@dataclasses.dataclass
class Target:
    expr: str
    legend: str = ""
    exemplar: bool = False   # latency histograms carry trace-id exemplars


@dataclasses.dataclass
class Panel:
    title: str
    targets: list[Target]
    unit: str = "short"
    kind: str = "timeseries"     # timeseries | stat | bargauge
    width: int = 8
    height: int = 8
    description: str = ""
    thresholds: list[tuple[float | None, str]] | None = None
    min: float | None = None
    max: float | None = None
    mappings: dict[str, str] | None = None   # exact value -> the text shown instead


def t(expr: str, legend: str = "", exemplar: bool = False) -> Target:
    return Target(expr, legend, exemplar)


def _sel(sel: str) -> str:
    return f"{{{sel}}}" if sel else ""


def rate(metric: str, sel: str = "", by: str = "", w: str = "5m") -> str:
    """``sum [by (...)] (rate(metric{sel}[w]))``."""
    group = f" by ({by})" if by else ""
    return f"sum{group} (rate({metric}{_sel(sel)}[{w}]))"


def rare_rate(metric: str, sel: str = "", by: str = "", *, zero_from: str = "",
              zero_sel: str | None = None, zero_by: str | None = None, w: str = "5m") -> str:
    """Rate of an event that may never have happened (errors, failures).

    A counter with labels has no series until its first event, and a panel
    showing "No data" reads as "broken" to on-call: fill 0 for every label set
    that ``zero_from`` (a metric always present, filtered by ``zero_sel`` and
    grouped by ``zero_by``; both default to the event's) has."""
    expr = rate(metric, sel, by, w)
    if not by:
        return f"({expr} or vector(0))"
    zero = rate(zero_from or metric, sel if zero_sel is None else zero_sel,
                by if zero_by is None else zero_by, w)
    return f"({expr} or 0 * {zero})"


def quantile(q: float, metric: str, sel: str = "", by: str = "", w: str = "5m") -> str:
    group = ", ".join(["le", *(x.strip() for x in by.split(",") if x.strip())])
    return f"histogram_quantile({q:g}, sum by ({group}) (rate({metric}_bucket{_sel(sel)}[{w}])))"


def quantiles(metric: str, sel: str = "", by: str = "", qs=(0.5, 0.95, 0.99)) -> list[Target]:
    prefix = " ".join(f"{{{{{x.strip()}}}}}" for x in by.split(",") if x.strip())
    return [t(quantile(q, metric, sel, by), f"{prefix} p{round(q * 100)}".strip(), exemplar=True)
            for q in qs]


def _panel_json(p: Panel, pid: int, x: int, y: int) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": p.unit}
    if p.min is not None:
        defaults["min"] = p.min
    if p.max is not None:
        defaults["max"] = p.max
    if p.mappings:
        defaults["mappings"] = [{"type": "value", "options": {
            v: {"text": text, "index": i} for i, (v, text) in enumerate(p.mappings.items())}}]
    if p.thresholds:
        defaults["thresholds"] = {"mode": "absolute", "steps": [
            {"color": color, "value": value} for value, color in p.thresholds]}
    out: dict[str, Any] = {
        "id": pid,
        "type": p.kind,
        "title": p.title,
        "description": p.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": p.height, "w": p.width, "x": x, "y": y},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": tg.expr,
             "legendFormat": tg.legend or "__auto", "exemplar": tg.exemplar, "range": True}
            for i, tg in enumerate(p.targets)
        ],
    }
    if p.kind == "timeseries":
        out["options"] = {"legend": {"displayMode": "list", "placement": "bottom"},
                          "tooltip": {"mode": "multi"}}
    else:
        out["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                          "colorMode": "background", "graphMode": "none"}
    return out


def dashboard(uid: str, title: str, sections: list[tuple[str, list[Panel]]],
              description: str = "") -> dict[str, Any]:
    """A dashboard whose sections are collapsible-free rows of panels, laid
    out left to right and wrapped at the grid width."""
    panels: list[dict[str, Any]] = []
    pid, y = 1, 0
    for row_title, row in sections:
        panels.append({"id": pid, "type": "row", "title": row_title, "collapsed": False,
                       "gridPos": {"h": 1, "w": GRID_WIDTH, "x": 0, "y": y}, "panels": []})
        pid, y = pid + 1, y + 1
        x, row_h = 0, 0
        for p in row:
            if x + p.width > GRID_WIDTH:
                x, y, row_h = 0, y + row_h, 0
            panels.append(_panel_json(p, pid, x, y))
            pid, x, row_h = pid + 1, x + p.width, max(row_h, p.height)
        y += row_h
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["voice"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "links": [{"type": "dashboards", "tags": ["voice"], "asDropdown": True,
                   "title": "Voice dashboards", "includeVars": False, "keepTime": True}],
        "templating": {"list": []},
        "annotations": {"list": []},
        "panels": panels,
    }


def exprs(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr) for every query of a dashboard: what tests check."""
    return [(p["title"], tg["expr"]) for p in board["panels"] for tg in p.get("targets", [])]
