"""One drill against a running stack, start to end:

  1. brief: what breaks, where to look, which alert, which runbook;
  2. spoken traffic starts (traffic.py) and runs until one turn has worked
     (the baseline: a stack that is already broken teaches nothing);
  3. the fault is set through the gateway's /admin/faults for the
     scenario's bounded time (it would end by itself even if this process
     died; it is also ended explicitly);
  4. meanwhile, if a Prometheus URL is given, its alerts are polled: time to
     detect = the scenario's alert going pending (and firing) after the
     fault started, by the alert's own activeAt;
  5. the fault ends; time to recover = the first completed turn spoken
     after that;
  (a release drill also starts a release of the service whose canary the
     fault breaks, runs the judge meanwhile (release.py) and ends the fault
     once the judge decided and its alert fired;)
  6. every item a client saw done is still in its session (resumed by id).

Times are wall-clock seconds as the team lives them (a drill is a real-time
exercise), measured here, never assumed."""
from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter
from typing import Awaitable, Callable

import httpx

from drills.admin import Admin
from drills.alertwatch import AlertWatch
from drills.catch_up import CATCH_UP_S, caught_up
from drills.panels import PanelSeen, panels_seen
from drills.release import DrillRelease, ReleaseOutcome
from drills.scenarios import Scenario
from drills.traffic import Traffic, lost_items
from release.store import ReleaseStore

Say = Callable[[str], None]


@dataclasses.dataclass
class DrillReport:
    name: str
    fault_s: float = 0.0
    detect_pending_s: float | None = None     # fault start -> alert pending
    detect_firing_s: float | None = None      # fault start -> alert firing
    alert: str | None = None                  # which of the scenario's alerts
    recover_s: float | None = None            # fault end -> first completed turn spoken after it
    resolved_s: float | None = None           # fault end -> alert no longer active (if seen)
    outcomes: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)   # phase -> outcome -> n
    errors: list[str] = dataclasses.field(default_factory=list)   # distinct error messages seen
    lost: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    sessions: dict[str, list[str]] = dataclasses.field(default_factory=dict)   # id -> items seen done
    release: ReleaseOutcome | None = None      # a release drill: what the judge decided, when, why
    release_expect: str = "rolled_back"       # ... and what it should have decided
    alert_before: str | None = None           # an expected alert already active at the fault's start
    before_cleared_s: float | None = None     # fault start -> that activation over (None: not seen over)
    panels: list[PanelSeen] = dataclasses.field(default_factory=list)   # the scenario's moves, as Prometheus saw them

    @property
    def panels_missed(self) -> list[str]:
        """Panels the runbook sends on-call to that did not show the fault."""
        return [p.panel for p in self.panels if not p.shown]

    @property
    def failures(self) -> list[str]:
        """Why the drill failed (empty: it passed). A drill passes when the system
        recovered, no history was lost, a release drill's judge decided as it
        should (a bad canary rolled back, a good one promoted), and
        every panel the runbook sends on-call to showed the fault (panels are read
        only with a Prometheus). An alert not seen is reported, not failed:
        production `for:` durations can outlast a drill's fault."""
        out = []
        if self.recover_s is None:
            out.append("no good turn after the fault ended")
        if self.lost:
            out.append(f"history lost in {len(self.lost)} session(s)")
        if self.release is not None and self.release.state != self.release_expect:
            out.append(f"the release should have been {self.release_expect.replace('_', ' ')}: "
                       f"it is {self.release.state or 'not started'}")
        if self.panels_missed:
            out.append("the dashboards did not show the fault on: " + "; ".join(self.panels_missed))
        return out

    def lines(self) -> list[str]:
        def s(v: float | None) -> str:
            return "not seen" if v is None else f"{v:.1f} s"
        out = [f"drill {self.name}: fault for {self.fault_s:.1f} s"]
        if self.alert_before:
            out.append(f"  NOTE: {self.alert_before} was already active before the fault: the stack "
                       "broke it without one, so this drill cannot show its detection"
                       + ("" if self.before_cleared_s is None else
                          f" (that activation ended {self.before_cleared_s:.1f} s into the fault)"))
        out += [
               f"  detected:  alert {self.alert or '-'} pending after {s(self.detect_pending_s)}, "
               f"firing after {s(self.detect_firing_s)}",
               f"  recovered: first good turn {s(self.recover_s)} after the fault ended; "
               f"alert resolved {s(self.resolved_s)} after it"]
        if self.release is not None:
            out.append(self.release.line())
        for phase, counts in self.outcomes.items():
            out.append(f"  turns {phase}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        out += [p.line() for p in self.panels]
        out += [f"  error seen: {e}" for e in self.errors[:8]]
        out.append("  history: " + ("intact" if not self.lost else f"LOST items in {len(self.lost)} sessions: "
                                    f"{self.lost}"))
        out.append("  drill: " + ("PASSED" if not self.failures else "FAILED: " + "; ".join(self.failures)))
        return out


def briefing(sc: Scenario, fault_s: float) -> list[str]:
    lines = [f"== drill {sc.name} ==", sc.teaches, ""]
    if sc.restarts_gateway:
        lines.append("Fault: the gateway restarts (SIGTERM, then started again); sessions resume by id.")
    if sc.faults:
        lines.append(f"Fault ({fault_s:.0f} s, ends by itself): " + "; ".join(
            ", ".join(f"{k}={v}" for k, v in f.items()) for f in sc.faults))
    if sc.release:
        lines.append(f"Release: the drill starts a release of the {sc.release.upper()} at "
                     f"{' -> '.join(f'{w:g} %' for w in sc.release_steps)}, a step judged every "
                     f"{sc.release_interval_s:.0f} s, and runs the release judge meanwhile (production's, but "
                     f"deciding on {sc.judge_min_samples} canary turns instead of 30"
                     + (", with its quality probes at each check time" if sc.probes else "") + "); "
                     + ("the fault hits only the canary's calls." if sc.faults else
                        f"nothing is injected: the canary pool (GATEWAY_{sc.release.upper()}_CANARY_ADDRS) "
                        "runs the release itself."))
    who = f"a new conversation every {sc.new_session_every} turns" if sc.new_session_every else "one session each"
    more = f"; {sc.arrivals} more arrive with the fault and leave at its end" if sc.arrivals else ""
    lines += [f"Traffic: {sc.users} people talking with real recorded speech ({who}){more}.", "Look at:"]
    lines += [f"  - {p}" for p in sc.look_at]
    lines.append("Alert that should fire: " + (" or ".join(sc.alerts) if sc.alerts else
                                               "none (a good release is not an incident)" if sc.release else
                                               "none (the protection working is not an incident)"))
    lines.append(f"Runbook: docs/runbooks/{sc.runbook}.md")
    return lines


async def run_drill(sc: Scenario, *, http_url: str, admin_key: str, clips: list, prometheus: str | None = None,
                    fault_s: float | None = None, users: int | None = None, baseline_timeout_s: float = 180,
                    recover_timeout_s: float = 180, say: Say = print,
                    restart: Callable[[], Awaitable[None]] | None = None,
                    end_after_firing_s: float | None = None, release_store: ReleaseStore | None = None,
                    judge_min_samples: int | None = None, calm_timeout_s: float = 60.0) -> DrillReport:
    """``restart``: for a drill that restarts the gateway, how (it returns once
    the gateway answers again); the drill never kills anything itself.
    ``end_after_firing_s``: end the fault this long after its alert is first
    seen firing instead of at ``fault_s`` (which is then the most it lasts):
    the tests' way to run every drill without waiting out faults already
    detected. A rehearsal (`make drill`) keeps the fault for its full time.
    ``release_store``: the gateways' release records (a release drill needs
    it); ``judge_min_samples`` overrides the scenario's. ``calm_timeout_s``:
    how long the baseline waits for the drill's alerts to be quiet before the
    fault (a slow host's first turns can break the latency SLO by themselves;
    a few good turns more end it, and the fault's detection can be seen)."""
    if sc.restarts_gateway and restart is None:
        raise ValueError(f"drill {sc.name} restarts the gateway: give the command that does it")
    if sc.release and release_store is None:
        raise ValueError(f"drill {sc.name} starts a {sc.release} release: give the gateways' Redis")
    fault_s = fault_s or sc.fault_s
    if sc.users_at_limit and not users:
        users = await _session_limit(http_url, say) or None
    # The briefing states the drill as run: its people and the judge's sample count.
    sc = dataclasses.replace(sc, users=users or sc.users,
                             judge_min_samples=judge_min_samples or sc.judge_min_samples)
    report = DrillReport(sc.name, fault_s, release_expect=sc.release_expect)
    for line in briefing(sc, fault_s):
        say(line)
    ws_url = http_url.replace("http", "ws", 1) + "/v1/realtime"
    traffic = Traffic(ws_url, clips, users or sc.users, new_session_every=sc.new_session_every)
    admin = Admin(http_url, admin_key)
    watch: AlertWatch | None = None
    rel: DrillRelease | None = None
    try:
        if sc.release:
            assert release_store is not None
            rel = DrillRelease(release_store, sc.release, sc.release_steps, sc.release_interval_s,
                               judge_min_samples or sc.judge_min_samples, await _probe(http_url, sc))
            report.release = rel.outcome
        traffic.start()
        say("baseline: waiting for a first good turn ...")
        if not await _until(lambda: traffic.ok_after(0.0) is not None, baseline_timeout_s):
            raise RuntimeError(f"no turn completed within {baseline_timeout_s:.0f} s before the fault: "
                               f"the stack is not healthy, no drill ({traffic.summary()})")
        since = 0.0
        if prometheus and sc.alerts and await _calm(AlertWatch(
                prometheus, sc.alerts, time.time(), {"backend": sc.release} if sc.release else None),
                calm_timeout_s, say):
            since = time.monotonic()      # it waited: align the fault with a turn that ends after
            await _until(lambda: traffic.ok_after(since) is not None, baseline_timeout_s)
        # The fault starts once that answer was heard (its speaker about to speak
        # again): detection times stay comparable from drill to drill.
        first = traffic.ok_after(since)
        if first is not None:
            await asyncio.sleep(max(0.0, first.ended_at + first.listen_s - time.monotonic()))
        t0, wall0 = time.monotonic(), time.time()
        watch = (AlertWatch(prometheus, sc.alerts, wall0, {"backend": sc.release} if sc.release else None)
                 if prometheus and sc.alerts else None)
        if sc.restarts_gateway:
            say(f"restarting the gateway at {time.strftime('%H:%M:%S')} ...")
            assert restart is not None           # checked on entry
            restarting = asyncio.ensure_future(restart())
            try:
                while not restarting.done():      # a quick restart's alert is pending for seconds only
                    if watch is not None:
                        await watch.poll()
                    await asyncio.wait({restarting}, timeout=0.5)
                await restarting
            finally:
                if not restarting.done():         # the drill itself cancelled: so is the restart
                    restarting.cancel()
                    await asyncio.wait({restarting})
            report.fault_s = time.monotonic() - t0
        else:
            scopes = {await admin.set({**body, "duration_s": fault_s}) for body in sc.fault_bodies()}
            arrived = traffic.join(sc.arrivals)
            say(f"fault ON at {time.strftime('%H:%M:%S')} for {fault_s:.0f} s"
                + (f", on {', '.join(sorted(scopes))}" if scopes else ""))
            if rel is not None:
                await rel.start()
                say(f"release of {sc.release} started at {sc.release_steps[0]:g} %")
            while time.monotonic() < t0 + fault_s:
                if rel is not None:
                    was = rel.decided
                    await rel.tick()
                    if rel.decided and not was:
                        say(rel.outcome.line().strip())
                if watch is not None:
                    await watch.poll()
                    if end_after_firing_s is not None and watch.firing_at is not None \
                            and (rel is None or rel.decided) \
                            and time.time() >= watch.firing_at + end_after_firing_s:
                        say(f"alert firing: ending the fault after {time.monotonic() - t0:.0f} s")
                        break
                if rel is not None and rel.decided and _settled(watch, rel, end_after_firing_s):
                    say(f"the judge decided: ending the fault after {time.monotonic() - t0:.0f} s")
                    break
                await asyncio.sleep(1.0)
            report.fault_s = time.monotonic() - t0
            await admin.clear()
            traffic.leave(arrived)
        t1 = time.monotonic()
        say(f"fault OFF at {time.strftime('%H:%M:%S')}; waiting for a good turn ...")
        deadline = t1 + recover_timeout_s
        settled_at = None if sc.settled_metric else t1
        while time.monotonic() < deadline:
            if watch is not None:
                await watch.poll()
            if settled_at is None and await admin.gauge(sc.settled_metric) == 0:
                settled_at = time.monotonic()
            if traffic.ok_after(t1) is not None and settled_at is not None:
                break
            await asyncio.sleep(1.0)
        first = traffic.ok_after(t1)
        if first is not None and settled_at is not None:
            report.recover_s = max(first.ended_at, settled_at) - t1
        if prometheus and not await caught_up(prometheus, time.time()):
            say(f"Prometheus had not scraped and evaluated everything since the recovery within "
                f"{CATCH_UP_S:.0f} s: the alert history and panels below may miss its end")
        if watch is not None:
            await watch.history(time.time())
            report.alert = watch.alert
            report.alert_before = watch.before
            report.before_cleared_s = None if watch.before_cleared_at is None else watch.before_cleared_at - wall0
            report.detect_pending_s = None if watch.pending_at is None else watch.pending_at - wall0
            report.detect_firing_s = None if watch.firing_at is None else watch.firing_at - wall0
            end_wall = wall0 + (t1 - t0)
            report.resolved_s = None if watch.cleared_at is None else watch.cleared_at - end_wall
        if prometheus and sc.moves:
            report.panels = await panels_seen(prometheus, sc.moves, wall0, time.time())
        report.outcomes = _phases(traffic, t0, t1)
        report.errors = sorted({e for t in traffic.turns for e in t.errors})
    finally:
        if rel is not None:
            await rel.finish()
        await admin.clear()
        await admin.close()
        await traffic.stop()
        if watch is not None:
            await watch.close()
    report.sessions = {sid: list(items) for sp in traffic.speakers for sid, items in sp.sessions.items() if sid}
    if sc.check_history:
        report.lost = await lost_items(ws_url, traffic.speakers)
    for line in report.lines():
        say(line)
    return report


async def _calm(watch: AlertWatch, timeout_s: float, say: Say, every_s: float = 2.0) -> bool:
    """Wait up to ``timeout_s`` while one of the drill's alerts is active
    (the traffic goes on meanwhile); say what happened. True if it waited.
    A Prometheus that cannot be read is not taken for a quiet one: no wait at
    first, and a failed read while waiting keeps waiting."""
    unreadable = (httpx.HTTPError, KeyError, ValueError)
    try:
        try:
            name: str | None = await watch.active()
        except unreadable as exc:
            say(f"baseline: Prometheus' alerts could not be read ({exc!r}); not waiting for them")
            return False
        if name is None:
            return False
        t0 = time.monotonic()
        say(f"baseline: {name} is active without a fault (the stack broke its SLO by itself); "
            f"waiting up to {timeout_s:.0f} s for it to end ...")
        while name is not None and time.monotonic() < t0 + timeout_s:
            await asyncio.sleep(every_s)
            try:
                name = await watch.active()
            except unreadable:
                pass              # unknown: still what it was
        say(f"baseline: {name} still active: this drill cannot show its detection" if name else
            f"baseline: quiet after {time.monotonic() - t0:.0f} s")
        return True
    finally:
        await watch.close()


async def _addresses(http_url: str, service: str) -> tuple[list[str], list[str]]:
    """(stable, canary) addresses of ``service`` from the gateway's /healthz."""
    async with httpx.AsyncClient(base_url=http_url, timeout=10) as c:
        body = (await c.get("/healthz")).json()
    canary = list((body.get("canary") or {}).get(service) or [])
    stable = [a for a in (body.get("backends") or {}).get(service, {}) if a not in canary] or canary
    return stable, canary


async def _session_limit(http_url: str, say: Say) -> int:
    """The gateway's session limit (GATEWAY_MAX_SESSIONS) from its /readyz (in
    its body whether ready or not); 0 = none or unknown (then the scenario's
    people). Behind a load balancer it is one gateway's limit."""
    try:
        async with httpx.AsyncClient(base_url=http_url, timeout=10) as c:
            return int((await c.get("/readyz")).json().get("max_sessions") or 0)
    except (httpx.HTTPError, ValueError, AttributeError, TypeError) as exc:
        say(f"could not read the gateway's session limit from /readyz ({exc!r}): the scenario's people")
        return 0


async def _probe(http_url: str, sc: Scenario):
    """A release drill needs a canary pool for the service (GATEWAY_<SVC>_CANARY_ADDRS);
    with ``sc.probes``, the judge's quality probes on one stable and one canary address."""
    stable, canary = await _addresses(http_url, sc.release)
    if not canary:
        raise RuntimeError(
            f"the gateway has no {sc.release} canary pool: start the stack with GATEWAY_{sc.release.upper()}"
            f"_CANARY_ADDRS set (docs/drills.md)")
    if not sc.probes:
        return None
    from release.probes import Prober

    asr_stable = stable[0] if sc.release == "asr" else (await _addresses(http_url, "asr"))[0][0]
    return Prober(asr_stable=asr_stable, asr_canary=canary[0] if sc.release == "asr" else "",
                  tts_stable=stable[0] if sc.release == "tts" else "",
                  tts_canary=canary[0] if sc.release == "tts" else "")


def _settled(watch: AlertWatch | None, rel: DrillRelease, end_after_firing_s: float | None) -> bool:
    """A release drill's fault may end: the judge decided and, if a Prometheus
    is watched, the rollback alert fired (or a production `for:` of 1 min and
    its evaluation passed since the decision without it)."""
    if watch is None:
        return True
    if watch.firing_at is not None:
        return end_after_firing_s is None or time.time() >= watch.firing_at + end_after_firing_s
    return rel.outcome.state != "rolled_back" or time.monotonic() - rel.decided_at > 150


def _phases(traffic: Traffic, t0: float, t1: float) -> dict[str, dict[str, int]]:
    out: dict[str, Counter] = {"before": Counter(), "during": Counter(), "after": Counter()}
    for t in traffic.turns:
        phase = "before" if t.spoken_at < t0 else "during" if t.spoken_at < t1 else "after"
        out[phase][t.outcome] += 1
    return {k: dict(v) for k, v in out.items()}


async def _until(pred: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        await asyncio.sleep(0.5)
    return pred()
