"""The canary drill's release: the drill starts a real release of the
service (release/controller.py, the same code as `python -m release`) and
runs the control loop while its fault lasts, so the judge, not the drill,
decides. A second loop already running (`make release-run`) does no harm:
the controller's writes are compare-and-set, only one acts on a step.

The judge is the production judge with one change, said in the briefing:
its minimum sample count (a drill of two people gives ~5 canary turns a
minute; production's 30 per rule would take ten). What the drill measures
is how long the judge took and which rule decided; a release the judge
has not decided when the drill ends, or promoted, is aborted (weight 0),
so a drill leaves no canary serving. The loop judges only the drill's own
service: another release is never decided on drill-sized samples.

A drill with probes (canary-asr-worse) gives the judge the quality probes
too, on one stable and one canary address of the service read from the
gateway's /healthz: its canary is bad in quality, not in speed."""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Awaitable, Callable

from common.clock import WallClock
from release.controller import Controller
from release.judge import Check, JudgeConfig
from release.state import ACTIVE
from release.store import ReleaseStore


HOLD_AT_LEAST_S = 240.0


@dataclasses.dataclass
class ReleaseOutcome:
    service: str
    state: str = ""                   # progressing, holding, promoted, rolled_back, aborted
    decided_s: float | None = None    # release start -> it left progressing/holding
    rule: str = ""                    # the rule that decided (a failing check, or 'command')
    reason: str = ""
    counts: dict[str, int] = dataclasses.field(default_factory=dict)   # turns judged per variant
    check: dict[str, Any] = dataclasses.field(default_factory=dict)    # the deciding check, as recorded

    def line(self) -> str:
        when = "not decided" if self.decided_s is None else f"{self.state} after {self.decided_s:.1f} s"
        counts = ", ".join(f"{v} {k}" for k, v in sorted(self.counts.items()))
        return (f"  release {self.service}: {when}" + (f" by {self.rule}: {self.reason}" if self.rule else "")
                + (f" (turns judged: {counts})" if counts else ""))


class DrillRelease:
    def __init__(self, store: ReleaseStore, service: str, steps: tuple[float, ...], interval_s: float,
                 min_samples: int, probe: Callable[[str], Awaitable[list[Check]]] | None = None) -> None:
        # probe: the quality probes (release/probes.py Prober), run at check times
        self.store, self.service = store, service
        self.steps, self.interval_s = list(steps), interval_s
        self.ctl = Controller(store, WallClock(), JudgeConfig(min_samples=min_samples), probe)
        self.outcome = ReleaseOutcome(service)
        self._t0 = 0.0
        self.decided_at = 0.0
        self.started = False

    async def start(self) -> None:
        self._t0 = time.monotonic()
        # Held (too few canary turns) at most 4 intervals, and never under 4 min: which
        # sessions a weight sends to the canary is a hash, and a few people's handful of
        # conversations can leave it short for a while (4 canary turns in 150 s, seen).
        rel = await self.ctl.start(self.service, self.steps, self.interval_s,
                                   hold_limit_s=max(4 * self.interval_s, HOLD_AT_LEAST_S))
        self.started = True
        self.outcome.state = rel.state

    @property
    def decided(self) -> bool:
        return self.outcome.decided_s is not None

    async def tick(self) -> None:
        """One turn of the control loop; records the decision once made."""
        if self.decided:
            return
        events = await self.ctl.tick(only=self.service)   # never another release, on drill-sized samples
        rel = (await self.store.load_all()).get(self.service)
        if rel is None:
            return
        self.outcome.state = rel.state
        mine = [e for e in events if e.get("service") == self.service]
        if mine:
            self._note(mine[-1])
        if rel.state not in ACTIVE:
            self.decided_at = time.monotonic()
            self.outcome.decided_s = self.decided_at - self._t0
            if not mine:             # decided by someone else (an operator, another loop)
                self._note_last(await self.store.events(self.service, 1))

    async def finish(self) -> None:
        """Abort the release this drill started if it is still undecided, or
        was promoted: the drill leaves no canary serving. A release the drill
        did not start (its start was refused: one was already running) is
        never touched."""
        if not self.started:
            return
        rel = (await self.store.load_all()).get(self.service)
        if rel is not None and rel.state in (*ACTIVE, "promoted"):
            why = ("drill ended before the judge decided" if rel.state in ACTIVE
                   else "drill over: the promoted canary is withdrawn")
            rel = await self.ctl.abort(self.service, reason=why)
            if not self.decided:
                self.outcome.state = rel.state

    def _note_last(self, events: list[dict[str, Any]]) -> None:
        if events:
            self._note(events[-1])

    def _note(self, e: dict[str, Any]) -> None:
        self.outcome.rule, self.outcome.reason = e.get("rule") or "", e.get("reason") or ""
        if "counts" in e:
            self.outcome.counts = dict(e["counts"])
        self.outcome.check = next((dict(c) for c in e.get("checks") or () if c.get("rule") == e.get("rule")), {})
