"""Did the panels a drill sends on-call to actually show the fault?

A scenario names the panels to look at ("Voice / stage / gateway: Backend
failures") and, for some of them, how the fault moves them and on which line
(the legend on-call reads: "asr", "failed", "asr_final"): `Move` in
scenarios.py. After the drill, each such panel's queries (the dashboard's own
PromQL and legends, from dashboards/boards.py) are read from Prometheus on a
1 s grid, from the fault's start to the end of its recovery, line by line as
the panel draws them (a step without a value is 0: a line that is not
drawn), and judged:

  up     the line rises during the fault: some value is above the lowest
         before it (counting from the value at the fault's start), by at
         least RISE times, or by 1 for counts and seconds (a 6th restart
         after 5, a state turning on, a p95 a second slower). The baseline
         is the value at the fault's start, not the minutes before: a
         failure rate wobbling earlier, a state left on by an earlier drill
         and put back on by this one, are judged by what this fault did.
  down   the line drops during the fault below its value at the fault's start.
  above  the line's highest value during the fault is RISE times the highest
         of another line of the same panel (`than`): the canary's p95 against
         stable's, the comparison the panel exists for.

A panel that does not move is reported with its numbers: a runbook that
sends on-call to a flat panel is a bug in the runbook (or the panel)."""
from __future__ import annotations

import dataclasses
import math
import re

import httpx

from dashboards.boards import boards
from drills.scenarios import Move

RISE = 1.5
STEP_S = 1.0

Series = list[float | None]    # one value per grid step, None where the line is not drawn


@dataclasses.dataclass
class PanelSeen:
    panel: str                 # "dashboard: panel"
    move: str                  # "up" | "down" | "above"
    shown: bool
    on: str = ""               # the line (legend) judged, or why none could be
    before: float | None = None   # the baseline: the value it rose from (dropped from; the other line's)
    during: float | None = None   # the value it reached

    def line(self) -> str:
        def v(x: float | None) -> str:
            return "no data" if x is None else f"{x:.3g}"
        verdict = "showed it" if self.shown else "DID NOT SHOW IT"
        if self.move == "above":
            moved = f"{self.on or '-'} at {v(self.during)} over the other line at {v(self.before)}"
        else:
            moved = f"{self.on or '-'} from {v(self.before)}, to {v(self.during)}"
        return f"  panel {self.panel}: {verdict} ({self.move}: {moved})"


def panel_targets(ref: str) -> list[tuple[str, str]]:
    """(PromQL, legend format) of each query behind "dashboard title: panel title"."""
    board_title, _, panel_title = ref.partition(": ")
    for board in boards().values():
        if board["title"] == board_title:
            for p in board["panels"]:
                if p["title"] == panel_title and p.get("targets"):
                    return [(tg["expr"], tg.get("legendFormat", "")) for tg in p["targets"]]
    raise KeyError(f"no panel {ref!r} on the dashboards (dashboards/boards.py)")


LABEL = re.compile(r"\{\{\s*(\w+)\s*\}\}")


def legend(fmt: str, labels: dict[str, str]) -> str:
    """A line's name as Grafana draws it: {{label}} filled in (a label the
    series lacks is drawn as its name)."""
    if fmt in ("", "__auto"):
        return ",".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "__name__") or "{}"
    return LABEL.sub(lambda m: labels.get(m.group(1), m.group(1)), fmt)


def can_draw(fmt: str, line: str) -> bool:
    """Whether a legend format can produce ``line`` (scenarios name real lines)."""
    pattern = "".join(".+" if i % 2 else re.escape(part) for i, part in enumerate(LABEL.split(fmt)))
    return fmt in ("", "__auto") or re.fullmatch(pattern, line) is not None


async def _range(c: httpx.AsyncClient, expr: str, fmt: str, start: float, steps: int) -> dict[str, Series]:
    """Line (its legend) -> one value per grid step from ``start`` (None: not
    drawn; NaN and ±Inf, which Grafana does not draw either, are None)."""
    r = await c.get("/api/v1/query_range", params={
        "query": expr, "start": f"{start:.3f}", "end": f"{start + (steps - 1) * STEP_S:.3f}",
        "step": f"{STEP_S:g}"})
    body = r.json()
    if body.get("status") != "success":
        raise RuntimeError(f"Prometheus refused the query: {body.get('error')}")
    out: dict[str, Series] = {}
    for s in body["data"]["result"]:
        name = legend(fmt, s["metric"])
        if name in out:
            raise RuntimeError(f"two lines drawn as {name!r}: the panel's legend does not tell them apart")
        vals: Series = [None] * steps
        for t, v in s["values"]:
            i, x = round((float(t) - start) / STEP_S), float(v)
            if 0 <= i < steps and math.isfinite(x):
                vals[i] = x
        out[name] = vals
    return out


def _rise(series: Series) -> tuple[float, float] | None:
    """(from, to) of the largest rise (each value against the lowest before
    it, from the fault's start), missing steps as 0."""
    vals = [0.0 if v is None else v for v in series]
    if not vals:
        return None
    low, best = vals[0], (vals[0], vals[0])
    for v in vals[1:]:
        if v - low > best[1] - best[0]:
            best = (low, v)
        low = min(low, v)
    return best


def judge(mv: Move, lines: dict[str, Series]) -> PanelSeen:
    """The pure rule (see the module doc) over a panel's lines on the grid,
    step 0 at the fault's start."""
    if mv.way == "above":
        mine, other = lines.get(mv.line), lines.get(mv.than)
        top = [max((v for v in s if v is not None), default=None) if s else None for s in (mine, other)]
        if top[0] is None or top[1] is None:
            missing = mv.line if top[0] is None else mv.than
            return PanelSeen(mv.panel, mv.way, False, f"no line {missing!r} during the fault")
        return PanelSeen(mv.panel, mv.way, top[0] >= RISE * top[1] and top[0] > top[1], mv.line, top[1], top[0])
    if mv.way not in ("up", "down"):
        raise ValueError(f"a panel moves up, down or above another line, not {mv.way!r}")
    best: tuple[tuple[bool, float], PanelSeen] | None = None
    for name, series in lines.items():
        if mv.line and name != mv.line:
            continue
        if mv.way == "up":
            rise = _rise(series)
            if rise is None:
                continue
            b, d = rise
            shown, margin = d > b and (d >= RISE * b or d - b >= 1.0), d - b
        else:
            if not series or series[0] is None:
                continue
            b, d = series[0], min(0.0 if v is None else v for v in series)
            shown, margin = d < b, b - d
        if best is None or (shown, margin) > best[0]:
            best = ((shown, margin), PanelSeen(mv.panel, mv.way, shown, name, b, d))
    if best is not None:
        return best[1]
    return PanelSeen(mv.panel, mv.way, False, f"no line {mv.line!r}" if mv.line else "no line")


async def panels_seen(prom_url: str, moves: tuple[Move, ...], fault_start_wall: float,
                      end_wall: float) -> list[PanelSeen]:
    """Each move: did its panel (line) show the fault between
    ``fault_start_wall`` and ``end_wall``? A panel Prometheus could not
    answer for is reported as not shown, with why; the others still are."""
    steps = max(1, round((end_wall - fault_start_wall) / STEP_S) + 1)
    out = []
    async with httpx.AsyncClient(base_url=prom_url, timeout=10) as c:
        for mv in moves:
            try:
                lines: dict[str, Series] = {}
                for expr, fmt in panel_targets(mv.panel):
                    for name, series in (await _range(c, expr, fmt, fault_start_wall, steps)).items():
                        if name in lines:
                            raise RuntimeError(f"two queries draw a line {name!r}")
                        lines[name] = series
                out.append(judge(mv, lines))
            except (httpx.HTTPError, ValueError, KeyError, RuntimeError) as e:
                out.append(PanelSeen(mv.panel, mv.way, False, f"could not read the panel: {e}"))
    return out

