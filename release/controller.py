"""The release controller: operator commands (start, promote, abort) and the
control loop that judges each active release and moves it (machine.py),
over an injected clock and a store (store.py), so tests step a release
through its schedule on a virtual clock in microseconds.

Each tick, for every progressing or holding release, the judge reads the
turns since the step began (the same window for canary and stable):
- at the step's check time, its verdict moves the release: pass -> next step
  (or promoted), fail -> rolled back (weight 0), inconclusive -> hold and
  re-judge one interval later, aborting once held longer than hold_limit_s;
- before the check time, only a failing *hard* rule acts (a broken canary is
  rolled back within one tick); the statistical test waits for the check
  time, since testing a growing window again and again would inflate its
  false alarms.

At check times the quality probes, when configured (release/probes.py), run
too and their checks join the verdict; they are not run on the early ticks
(they cost model time on the canary).

Every decision (a verdict that moved or held a release, or an operator's
command) is appended to the event log with what, when, the rule that decided
and the measured values. A save that lost a race (the record changed under
us, e.g. an operator's abort) is not retried by the loop: the next tick
starts from the new record."""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable

from release import machine
from release.judge import FAIL, INCONCLUSIVE, PASS, Check, JudgeConfig, Verdict, judge
from release.state import ACTIVE, SERVICES, Release
from release.store import ReleaseStore

log = logging.getLogger(__name__)
_EVENT_OF = {PASS: machine.PASS, FAIL: machine.FAIL, INCONCLUSIVE: machine.INCONCLUSIVE}


class Conflict(RuntimeError):
    """The record kept changing under a command (another writer)."""


class Controller:
    def __init__(self, store: ReleaseStore, clock: Any, cfg: JudgeConfig | None = None,
                 probe: Callable[[str], Awaitable[list[Check]]] | None = None) -> None:
        """``probe(service)``: quality checks (release/probes.py), run at check times only."""
        self.store, self.clock, self.cfg, self.probe = store, clock, cfg or JudgeConfig(), probe

    # -- operator commands ---------------------------------------------------------------
    async def status(self) -> dict[str, Release]:
        return await self.store.load_all()

    async def start(self, service: str, steps: list[float] | None = None, interval_s: float | None = None,
                    hold_limit_s: float | None = None) -> Release:
        new = await self._command(service, machine.START, reason="release started", steps=steps,
                                  interval_s=interval_s, hold_limit_s=hold_limit_s)
        return new

    async def promote(self, service: str) -> Release:
        return await self._command(service, machine.PROMOTE)

    async def abort(self, service: str, reason: str = "operator") -> Release:
        return await self._command(service, machine.ABORT, reason=reason)

    async def _command(self, service: str, event: str, reason: str = "operator command", **kw: Any) -> Release:
        if service not in SERVICES:
            raise ValueError(f"unknown service {service!r} (one of {', '.join(SERVICES)})")
        for _ in range(3):
            rel = (await self.store.load_all()).get(service) or Release(service)
            new = machine.apply(rel, event, self.clock.now(), **kw)
            if await self.store.save(new):
                await self._record(rel, new, event, "operator", rule="command", reason=reason)
                return new
        raise Conflict(f"{service}: the release record kept changing; try again")

    # -- the control loop ------------------------------------------------------------------
    async def tick(self, only: str | None = None) -> list[dict[str, Any]]:
        """Judge every active release once (or only ``only``'s); returns the events written."""
        out = []
        for rel in (await self.store.load_all()).values():
            if rel.state in ACTIVE and only in (None, rel.service):
                ev = await self._judge(rel)
                if ev is not None:
                    out.append(ev)
        return out

    async def run(self, poll_s: float = 10.0, stop: asyncio.Event | None = None,
                  heartbeat: Callable[[], None] | None = None) -> None:
        """Tick every ``poll_s`` until ``stop`` is set; a failing tick (Redis
        down) is logged and retried, never ends the loop. ``heartbeat`` is
        called before each tick and after it, whatever its outcome: a loop
        whose heartbeat stops is stuck (a liveness probe restarts it)."""
        while stop is None or not stop.is_set():
            if heartbeat is not None:
                heartbeat()
            try:
                await self.tick()
            except Exception:
                log.exception("release tick failed; retrying in %.0f s", poll_s)
            if heartbeat is not None:
                heartbeat()
            await self.clock.sleep(poll_s)

    async def _judge(self, rel: Release) -> dict[str, Any] | None:
        now = self.clock.now()
        window = (rel.step_started_at, now)
        samples = await self.store.samples(*window)
        if now < rel.next_check_at:
            verdict = judge(rel.service, samples, self.cfg)
            if not (verdict.verdict == FAIL and verdict.rule.startswith("hard:")):
                return None
        else:
            quality = await self.probe(rel.service) if self.probe is not None else None
            verdict = judge(rel.service, samples, self.cfg, quality)
        event = _EVENT_OF[verdict.verdict]
        if (event == machine.INCONCLUSIVE and rel.hold_since is not None
                and now - rel.hold_since >= rel.hold_limit_s):
            event = machine.HOLD_EXPIRED
        new = machine.apply(rel, event, now)
        # An inconclusive step held past its limit is aborted: say that, not "inconclusive".
        new.last = {"verdict": "hold_expired" if event == machine.HOLD_EXPIRED else verdict.verdict,
                    "rule": verdict.rule, "at": now}
        if not await self.store.save(new):
            log.warning("%s: release changed while it was judged; re-judging next tick", rel.service)
            return None
        return await self._record(rel, new, event, "controller", verdict=verdict, window=window)

    async def _record(self, old: Release, new: Release, event: str, actor: str, *, rule: str = "",
                      reason: str = "", verdict: Verdict | None = None,
                      window: tuple[float, float] | None = None) -> dict[str, Any]:
        ev: dict[str, Any] = {
            "ts": self.clock.now(), "service": new.service, "event": event, "actor": actor,
            "from": {"state": old.state, "weight": old.weight, "step": old.step},
            "to": {"state": new.state, "weight": new.weight, "step": new.step},
            "rule": rule, "reason": reason,
        }
        if verdict is not None:
            ev.update(verdict.record())
            if event == machine.HOLD_EXPIRED:
                ev["reason"] = (f"inconclusive for {ev['ts'] - (old.hold_since or ev['ts']):.0f} s "
                                f"(limit {old.hold_limit_s:g} s): {verdict.reason}")
        if window is not None:
            ev["window"] = list(window)
        await self.store.add_event(ev)
        level = logging.ERROR if new.state == "rolled_back" else logging.INFO
        log.log(level, "release %s: %s (%s) %s %g%% -> %s %g%%: %s", new.service, event, ev["rule"],
                old.state, old.weight, new.state, new.weight, ev["reason"])
        return ev
