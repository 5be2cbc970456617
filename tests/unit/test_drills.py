"""Invariant: every drill points on-call at things that exist (the dashboard
panels it names, the alerts it expects, its runbook), injects only faults
the gateway accepts, and its report counts turns by phase from what the
traffic saw."""
from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import yaml

from drills.alertwatch import AlertWatch
from drills.panels import PanelSeen, can_draw, judge, legend, panel_targets
from drills.runner import DrillReport, _phases, briefing
from drills.scenarios import SCENARIOS, Move
from drills.traffic import Traffic, Turn
from services.gateway.faults.table import parse
from tests.procs import ROOT


def _panels() -> set[str]:
    out = set()
    for path in (ROOT / "dashboards").glob("*.json"):
        board = json.loads(path.read_text())
        out |= {f"{board['title']}: {p['title']}" for p in board.get("panels", [])}
    return out


def _alerts() -> set[str]:
    names = set()
    for path in (ROOT / "observability/prometheus/rules").glob("*.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            names |= {r["alert"] for r in group["rules"] if "alert" in r}
    return names


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_a_drill_names_panels_alerts_and_a_runbook_that_exist(name):
    sc = SCENARIOS[name]
    panels, alerts = _panels(), _alerts()
    assert set(sc.look_at) <= panels, set(sc.look_at) - panels
    assert set(sc.alerts) <= alerts, set(sc.alerts) - alerts
    assert (ROOT / "docs/runbooks" / f"{sc.runbook}.md").is_file()
    for body in sc.fault_bodies():
        parse(body, 0.0, 900)                      # the gateway would accept it
    text = "\n".join(briefing(sc, sc.fault_s))
    assert sc.runbook in text and all(p in text for p in sc.look_at)
    # The panels it asserts on are ones it sends on-call to, with queries.
    assert sc.moves, "a drill shows its fault somewhere: name the panels that move"
    for mv in sc.moves:
        assert mv.panel in sc.look_at and mv.way in ("up", "down", "above"), mv
        legends = [fmt for _, fmt in panel_targets(mv.panel)]
        # The line it names is one the panel can draw (a typo fails here, not live).
        for line in filter(None, (mv.line, mv.than)):
            assert any(can_draw(fmt, line) for fmt in legends), (mv, legends)


def test_a_panel_shows_a_fault_only_when_its_line_moves_the_expected_way():
    up = Move("p", "up")
    # A new line (a `failed` outcome, not drawn at the fault's start) is the fault showing.
    seen = judge(up, {"completed": [0.10, 0.12, 0.11], "failed": [None, 0.02, 0.05]})
    assert seen.shown and seen.on == "failed" and (seen.before, seen.during) == (0.0, 0.05)
    # Wobbling within RISE of where it started is not showing anything.
    assert not judge(up, {"completed": [0.11, 0.16, 0.12]}).shown
    assert judge(up, {"completed": [0.11, 0.2]}).shown
    # A rise counts from the lowest value before it: a state an earlier drill
    # left on, put off and on again by this one, shows; a count going up by one too.
    assert judge(Move("p", "up", "tts rolled_back"), {"tts rolled_back": [1.0, None, None, 1.0]}).shown
    assert judge(up, {"gateway": [5.0, 5.0, 6.0]}).shown
    assert not judge(up, {"gateway": [5.0, 5.0, 5.0]}).shown
    # Named line: only that one counts (more completed turns are not failures).
    failed = Move("p", "up", "failed")
    assert not judge(failed, {"completed": [0.11, 0.5], "failed": [0.0, 0.0]}).shown
    assert "no line 'failed'" in judge(failed, {"completed": [0.5]}).on
    # All zero: not shown (a zero line added for every backend stays 0).
    assert not judge(up, {"llm": [0.0, 0.0]}).shown
    down = Move("p", "down")
    assert judge(down, {"up": [6.0, 5.0, 6.0], "of": [6.0, 6.0, 6.0]}).shown
    assert not judge(down, {"up": [6.0, 6.0], "of": [6.0, 6.0]}).shown
    assert "no line" in judge(down, {}).on
    # Above: the canary's line against stable's on the same panel, not against nothing.
    above = Move("p", "above", "canary", than="stable")
    assert judge(above, {"canary": [None, 2.9], "stable": [0.9, 1.0]}).shown
    assert not judge(above, {"canary": [None, 1.2], "stable": [0.9, 1.0]}).shown
    assert "no line 'stable'" in judge(above, {"canary": [None, 2.9]}).on


def test_a_line_is_named_by_its_legend_as_grafana_draws_it():
    assert legend("{{backend}} {{state}}", {"backend": "tts", "state": "rolled_back"}) == "tts rolled_back"
    assert legend("{{backend}} {{verdict}}", {"backend": "tts"}) == "tts verdict"   # as Grafana draws a missing label
    assert legend("failures/s", {}) == "failures/s"
    assert legend("__auto", {"__name__": "x", "slo": "a"}) == "slo=a"
    assert panel_targets("Voice / overview: Components up")[1][1] == "of"
    assert can_draw("{{backend}} {{state}}", "tts rolled_back") and not can_draw("{{backend}} {{state}}", "tts")
    assert can_draw("failures/s", "failures/s") and not can_draw("failures/s", "failures")


def test_the_report_names_a_panel_that_did_not_show_the_fault():
    r = DrillReport("asr-down", 60, panels=[
        PanelSeen("Voice / stage / gateway: Backend failures", "up", True, "asr", 0.0, 0.4),
        PanelSeen("Voice / stage / gateway: Error events by code", "up", False, "backend_unavailable", 0.0, 0.0)])
    assert r.panels_missed == ["Voice / stage / gateway: Error events by code"]
    text = "\n".join(r.lines())
    assert "Backend failures: showed it (up: asr from 0, to 0.4)" in text
    assert "Error events by code: DID NOT SHOW IT" in text
    # make drill fails on it: on-call would have looked at a panel that showed nothing.
    assert r.failures == ["no good turn after the fault ended", "the dashboards did not show the fault "
                          "on: Voice / stage / gateway: Error events by code"]
    assert text.endswith("drill: FAILED: " + "; ".join(r.failures))
    r.recover_s, r.panels[1].shown = 3.0, True
    from drills.release import ReleaseOutcome
    good = DrillReport("canary-good", 60, recover_s=1.0, release=ReleaseOutcome("tts", "rolled_back"),
                       release_expect="promoted")
    assert good.failures == ["the release should have been promoted: it is rolled_back"]
    good.release = ReleaseOutcome("tts", "promoted")
    assert good.failures == []
    assert r.failures == [] and text != "\n".join(r.lines()) and r.lines()[-1] == "  drill: PASSED"


def test_the_report_counts_turns_by_phase_and_says_when_history_was_lost():
    tr = Traffic("ws://x", [], users=0)
    tr.turns = [Turn(0, 1.0, 3.0, "completed"), Turn(0, 11.0, 12.0, "failed", ["backend_unavailable: tts"]),
                Turn(1, 12.0, 14.0, "completed"), Turn(0, 25.0, 27.0, "completed")]
    assert _phases(tr, 10.0, 20.0) == {"before": {"completed": 1}, "during": {"failed": 1, "completed": 1},
                                       "after": {"completed": 1}}
    assert tr.ok_after(20.0).spoken_at == 25.0 and tr.ok_after(30.0) is None
    r = DrillReport("tts-errors", 60, recover_s=2.5, lost={"sess_1": ["item_9"]})
    text = "\n".join(r.lines())
    assert "2.5 s after the fault ended" in text and "LOST items in 1 sessions" in text
    assert "pending after not seen" in text


def test_traffic_summary_says_what_the_turns_did():
    """A drill that finds no good turn says what the turns did instead (the
    message a failed baseline carries)."""
    tr = Traffic("ws://unused", [], users=1)
    assert tr.summary() == "turns none, errors none"
    tr.turns += [Turn(0, 1.0, 2.0, "failed", ["backend_unavailable: tts at x"]),
                 Turn(0, 3.0, 4.0, "no_answer"), Turn(0, 5.0, 6.0, "failed", ["backend_unavailable: tts at x"])]
    assert tr.summary() == "turns {'failed': 2, 'no_answer': 1}, errors ['backend_unavailable: tts at x']"


async def test_drill_traffic_speaks_real_clips_and_records_each_turn():
    """The traffic a drill drives, against the scripted Realtime server: real
    clips at real time, each turn's outcome recorded, one session kept."""
    import asyncio

    from clients.clips import load_clips
    from tests.unit.realtime_fake import fake_gateway

    clip = min(load_clips(), key=lambda c: c.seconds)
    with fake_gateway() as base:
        tr = Traffic(f"{base}/v1/realtime", [clip], users=1, think_s=0.1)
        tr.start()
        for _ in range(300):
            if len(tr.turns) >= 2:
                break
            await asyncio.sleep(0.1)
        await tr.stop()
    assert len(tr.turns) >= 2 and tr.turns[0].outcome == "completed", tr.turns
    assert tr.turns[0].ended_at > tr.turns[0].spoken_at
    # A turn ends at its response.done; the listener then hears the 2 s answer
    # (the fake's reply), thinks and speaks the next clip (a drill's recovery
    # is the first answer, not the end of its audio).
    gap = tr.turns[1].spoken_at - tr.turns[0].ended_at
    assert gap >= clip.seconds + 1.5, (gap, clip.seconds)
    assert tr.speakers[0].session_id == "sess_fake"


async def test_a_speaker_survives_a_session_that_fails_mid_setup():
    """A drill speaker whose session fails outside a turn (a session.update
    with no reply in time, as from a gateway restarting under load) records
    it and reconnects; before, the exception ended the speaker's task and the
    drill waited for turns nobody spoke any more (gateway-restart drill)."""
    import asyncio

    from clients.clips import load_clips
    from tests.unit.realtime_fake import fake_gateway

    clip = min(load_clips(), key=lambda c: c.seconds)
    with fake_gateway() as base:
        tr = Traffic(f"{base}/v1/realtime", [clip], users=1, think_s=0.1)
        real_talk, failures = tr._talk, []

        async def flaky_talk(sp, rt, clips):
            if not failures:
                failures.append(1)
                raise TimeoutError("no session.updated within 10 s")
            await real_talk(sp, rt, clips)

        tr._talk = flaky_talk
        tr.start()
        for _ in range(300):
            if tr.ok_after(0.0) is not None:
                break
            await asyncio.sleep(0.1)
        await tr.stop()
    assert [t.outcome for t in tr.turns][:2] == ["closed", "completed"], tr.turns
    assert "no session.updated" in tr.turns[0].errors[0]


async def test_the_release_drill_lets_the_judge_roll_back_a_slow_canary_and_says_why():
    """The canary drill's release (drills/release.py) is the real controller:
    a canary whose TTS first audio is 1.5 s late is rolled back by a hard
    rule as soon as the judge has its (drill-sized) sample count, and the
    outcome names the rule and the turns judged."""
    import asyncio
    import time

    from drills.release import DrillRelease
    from release.samples import Sample
    from release.store import MemoryReleaseStore

    store = MemoryReleaseStore()
    rel = DrillRelease(store, "tts", (50.0, 100.0), interval_s=120.0, min_samples=5)
    await rel.start()
    assert (await store.load_all())["tts"].weight == 50.0
    await rel.tick()
    assert not rel.decided                          # no turns yet: nothing to judge
    now = time.time()
    for i in range(6):
        for canary in (False, True):
            store.sample_log.append(Sample(ts=now, canary=frozenset({"tts"}) if canary else frozenset(),
                                           v2v_ms=2300.0 if canary else 800.0,
                                           tts_first_audio_ms=1700.0 if canary else 200.0))
    await asyncio.sleep(0.01)                       # the turns ended before the judge looks
    await rel.tick()
    assert rel.decided and rel.outcome.state == "rolled_back", rel.outcome
    assert rel.outcome.rule.startswith("hard:p95:"), rel.outcome
    assert rel.outcome.counts == {"canary": 6, "stable": 6}
    assert (await store.load_all())["tts"].weight == 0.0
    assert "rolled_back after" in rel.outcome.line() and "6 canary" in rel.outcome.line()
    await rel.finish()                               # decided: nothing to undo
    assert (await store.load_all())["tts"].state == "rolled_back"


async def test_a_release_drill_never_leaves_an_undecided_canary_serving():
    from drills.release import DrillRelease
    from release.store import MemoryReleaseStore

    store = MemoryReleaseStore()
    rel = DrillRelease(store, "tts", (50.0, 100.0), interval_s=120.0, min_samples=5)
    await rel.start()
    await rel.finish()
    got = (await store.load_all())["tts"]
    assert (got.state, got.weight) == ("aborted", 0.0)


async def test_a_new_conversation_every_n_turns(monkeypatch):
    """new_session_every: each speaker starts a new session (connects without
    a session id) after N turns; what it saw done is kept per session."""
    import asyncio

    from clients.clips import load_clips
    from clients.realtime import RealtimeClient
    from drills import traffic as traffic_mod
    from tests.unit.realtime_fake import fake_gateway

    resumed: list[str | None] = []

    class Recording(RealtimeClient):
        def __init__(self, *a, **kw):
            resumed.append(kw.get("session_id"))
            super().__init__(*a, **kw)

    monkeypatch.setattr(traffic_mod, "RealtimeClient", Recording)
    clip = min(load_clips(), key=lambda c: c.seconds)
    with fake_gateway() as base:
        tr = Traffic(f"{base}/v1/realtime", [clip], users=1, think_s=0.05, new_session_every=1)
        tr.start()
        for _ in range(400):
            if sum(t.ok for t in tr.turns) >= 2:
                break
            await asyncio.sleep(0.1)
        await tr.stop()
    assert sum(t.ok for t in tr.turns) >= 2, tr.turns
    assert len(resumed) >= 2 and set(resumed) == {None}, resumed    # a new conversation each time
    assert tr.speakers[0].sessions == {"sess_fake": tr.speakers[0].sessions["sess_fake"]}


async def test_a_release_drill_touches_no_release_it_did_not_start():
    """An operator's release already progressing: the drill's start is
    refused, and its cleanup leaves that release alone; its loop judges only
    its own service."""
    from drills.release import DrillRelease
    from release.controller import Controller
    from release.machine import IllegalTransition
    from release.store import MemoryReleaseStore
    from common.clock import WallClock

    store = MemoryReleaseStore()
    await Controller(store, WallClock()).start("tts", [5.0, 100.0], 300.0, 900.0)
    await Controller(store, WallClock()).start("asr", [5.0, 100.0], 1.0, 900.0)
    rel = DrillRelease(store, "tts", (50.0, 100.0), interval_s=120.0, min_samples=5)
    with pytest.raises(IllegalTransition):
        await rel.start()
    await rel.finish()
    got = await store.load_all()
    assert (got["tts"].state, got["tts"].weight) == ("progressing", 5.0)
    rel.started = True                            # as if it had started: its loop still judges tts only
    await asyncio.sleep(1.1)                      # the asr release's step is due
    await rel.tick()
    assert (await store.load_all())["asr"].decisions == got["asr"].decisions


async def test_an_alert_pending_between_two_polls_is_found_in_prometheus_history():
    """A restart of a second: VoiceComponentDown was pending for one
    evaluation, between the drill's polls. Its ALERTS samples say when; an
    alert already active before the fault (its first sample earlier) is not
    this fault's detection."""
    import httpx

    since = 1000.0
    series = [
        {"metric": {"alertname": "VoiceComponentDown", "alertstate": "pending", "job": "gateway"},
         "values": [[1001.0, "1"], [1002.0, "1"]]},
        {"metric": {"alertname": "VoiceComponentDown", "alertstate": "firing", "job": "asr"},
         "values": [[float(t), "1"] for t in range(996, 1004)]},   # active before the fault (every 1 s step)
    ]
    asked = []

    def prometheus(req: httpx.Request) -> httpx.Response:
        asked.append(dict(req.url.params))
        return httpx.Response(200, json={"status": "success", "data": {"resultType": "matrix", "result": series}})

    watch = AlertWatch("http://prom", ("VoiceComponentDown",), since, transport=httpx.MockTransport(prometheus))
    await watch.history(1010.0)
    await watch.close()
    assert (watch.alert, watch.pending_at, watch.firing_at) == ("VoiceComponentDown", 1001.0, None)
    assert asked[0]["query"] == 'ALERTS{alertname=~"VoiceComponentDown"}'
    assert float(asked[0]["start"]) < since <= 1010.0 == float(asked[0]["end"])


async def test_panels_wait_for_prometheus_to_scrape_and_evaluate_after_the_recovery():
    """With production's 15 s scrapes a gateway restarted 9 s before the
    first good turn was in no sample yet, and its Restarts panel read flat:
    the panels are read once every target was scraped after the recovery and
    every rule group evaluated after those scrapes (a virtual clock; each
    poll moves Prometheus on by one step)."""
    import httpx

    from drills.catch_up import caught_up

    since = 1_800_000_000.0

    def stamp(t: float) -> str:
        import datetime
        return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat().replace("+00:00", "Z")

    polls = {"targets": 0, "rules": 0}
    scrapes = [[since - 5, since - 1], [since + 3, since - 1], [since + 3, since + 8]]   # the 2nd target lags
    evals = [[since + 4], [since + 9]]                                                   # one before the scrape

    def prometheus(req: httpx.Request) -> httpx.Response:
        if req.url.path == "/api/v1/targets":
            at = scrapes[min(polls["targets"], len(scrapes) - 1)]
            polls["targets"] += 1
            data = {"activeTargets": [{"lastScrape": stamp(t)} for t in at]}
        else:
            at = evals[min(polls["rules"], len(evals) - 1)]
            polls["rules"] += 1
            data = {"groups": [{"lastEvaluation": stamp(t)} for t in at]}
        return httpx.Response(200, json={"status": "success", "data": data})

    now = [0.0]

    async def sleep(s: float) -> None:
        now[0] += s

    assert await caught_up("http://prom", since, transport=httpx.MockTransport(prometheus),
                           sleep=sleep, clock=lambda: now[0])
    assert polls == {"targets": 3, "rules": 2}     # waited for the lagging target, then for an evaluation after it

    # A Prometheus that never catches up: False at the timeout, not a hang.
    polls.update(targets=0, rules=0)
    scrapes[:] = [[since - 5]]
    now[0] = 0.0
    assert not await caught_up("http://prom", since, timeout_s=10, transport=httpx.MockTransport(prometheus),
                               sleep=sleep, clock=lambda: now[0])
    assert now[0] == 10.0


async def test_the_admin_gauge_sums_one_metrics_samples_and_says_none_when_it_cannot_read():
    from drills.admin import Admin

    bodies = iter([
        '# TYPE voice_breaker_open gauge\nvoice_breaker_open{service="asr"} 1.0\n'
        'voice_breaker_open{service="llm"} 2.0\nvoice_breaker_open_other 7.0\n',
        "voice_turns_total 3\n",
        "voice_breaker_open{service= 1\n",       # not the exposition format
    ])
    admin = Admin("http://gw", "k")
    admin._c = httpx.AsyncClient(base_url="http://gw", transport=httpx.MockTransport(
        lambda req: httpx.Response(200, text=next(bodies))))
    assert await admin.gauge("voice_breaker_open") == 3.0
    assert await admin.gauge("voice_breaker_open") is None      # the series is missing
    assert await admin.gauge("voice_breaker_open") is None      # unparsable
    await admin.close()


async def test_the_briefing_states_the_people_and_samples_the_drill_runs_with():
    """A drill run with more people (or a smaller judge sample) than its
    scenario says so in its briefing (it said the scenario's numbers)."""
    from drills.runner import run_drill

    said: list[str] = []
    with pytest.raises(RuntimeError, match="no turn completed"):
        await run_drill(SCENARIOS["llm-hung"], http_url="http://127.0.0.1:9", admin_key="k", clips=[],
                        users=3, baseline_timeout_s=0.1, say=said.append)
    assert any(line.startswith("Traffic: 3 people") for line in said), said
    said.clear()
    with pytest.raises(httpx.ConnectError):   # no gateway to start a release with: after the briefing
        await run_drill(SCENARIOS["canary-bad"], http_url="http://127.0.0.1:9", admin_key="k", clips=[],
                        release_store=object(), judge_min_samples=5, say=said.append)
    assert any("deciding on 5 canary turns" in line for line in said), said



async def test_the_overload_drill_brings_as_many_people_as_the_gateway_admits():
    """Its people fill the gateway's session limit (read from /readyz, whose
    body says it even when the gateway is full), so the arrivals are the ones
    over it, whatever GATEWAY_MAX_SESSIONS is."""
    import http.server
    import json
    import threading

    from drills.runner import run_drill

    class Readyz(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"status": "full", "active_sessions": 5, "max_sessions": 5}).encode()
            self.send_response(503 if self.path == "/readyz" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Readyz)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    said: list[str] = []
    try:
        with pytest.raises(RuntimeError, match="no turn completed"):
            await run_drill(SCENARIOS["overload"], http_url=f"http://127.0.0.1:{srv.server_port}",
                            admin_key="k", clips=[], baseline_timeout_s=0.1, say=said.append)
    finally:
        srv.shutdown()
    assert any(line.startswith("Traffic: 5 people") for line in said), said

async def test_an_alert_pending_before_the_fault_and_firing_after_it_is_not_its_detection():
    """CI, 2026-12-06: the latency burn-rate alert went pending on a slow
    baseline and fired a second after the fault began; its firing series'
    first sample fell inside the fault, and the drill reported it detected at
    -1.0 s. Pending and firing are one alert: it was active before."""
    import httpx

    since = 1000.0
    labels = {"alertname": "VoiceTurnLatencyErrorBudgetBurnFast", "slo": "voice_to_voice_latency"}
    series = [
        {"metric": {**labels, "alertstate": "pending"}, "values": [[t + 0.5, "1"] for t in range(994, 999)]},
        {"metric": {**labels, "alertstate": "firing"}, "values": [[t + 0.5, "1"] for t in range(999, 1041)]},
    ]

    def prometheus(req: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"status": "success", "data": {"resultType": "matrix", "result": series}})

    watch = AlertWatch("http://prom", (labels["alertname"],), since, transport=httpx.MockTransport(prometheus))
    await watch.history(1050.0)
    await watch.close()
    assert (watch.alert, watch.pending_at, watch.firing_at) == (None, None, None)
    assert watch.before == labels["alertname"]


async def test_an_alert_that_ended_before_the_fault_and_began_again_during_it_is_detected():
    """The drill waited for the baseline's alert to end (runner._calm); the
    fault's own activation is a new run of the same series."""
    import httpx

    since = 1000.0
    labels = {"alertname": "VoiceTurnLatencyErrorBudgetBurnFast", "slo": "voice_to_voice_latency"}
    series = [
        {"metric": {**labels, "alertstate": "pending"},
         "values": [[996.0, "1"], [997.0, "1"], [1020.0, "1"], [1021.0, "1"]]},
        {"metric": {**labels, "alertstate": "firing"}, "values": [[1022.0, "1"], [1023.0, "1"]]},
    ]

    def prometheus(req: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"status": "success", "data": {"resultType": "matrix", "result": series}})

    watch = AlertWatch("http://prom", (labels["alertname"],), since, transport=httpx.MockTransport(prometheus))
    await watch.history(1050.0)
    await watch.close()
    assert (watch.alert, watch.pending_at, watch.firing_at, watch.before) == (labels["alertname"], 1020.0, 1022.0, None)


async def test_the_baseline_waits_for_the_drills_alert_to_end_and_says_so():
    import httpx

    from drills.runner import _calm

    polls = []

    def prometheus(req: httpx.Request) -> httpx.Response:
        polls.append(1)
        active = [{"labels": {"alertname": "VoiceTurnLatencyErrorBudgetBurnFast"}, "state": "firing"},
                  {"labels": {"alertname": "SomethingElse"}, "state": "firing"}]
        alerts = active if len(polls) < 3 else active[1:]
        return httpx.Response(200, json={"status": "success", "data": {"alerts": alerts}})

    said: list[str] = []
    watch = AlertWatch("http://prom", ("VoiceTurnLatencyErrorBudgetBurnFast",), 0.0,
                       transport=httpx.MockTransport(prometheus))
    assert await _calm(watch, 5.0, said.append, every_s=0.01) is True
    assert len(polls) == 3
    assert said[0].startswith("baseline: VoiceTurnLatencyErrorBudgetBurnFast is active without a fault")
    assert said[-1].startswith("baseline: quiet after")

    said.clear()
    polls.clear()
    watch = AlertWatch("http://prom", ("SomethingElse",), 0.0, transport=httpx.MockTransport(prometheus))
    assert await _calm(watch, 0.05, said.append, every_s=0.01) is True
    assert said[-1] == "baseline: SomethingElse still active: this drill cannot show its detection"

    said.clear()
    watch = AlertWatch("http://prom", ("VoiceTurnLatencyErrorBudgetBurnFast",), 0.0,
                       transport=httpx.MockTransport(lambda req: httpx.Response(200, json={"data": {}})))
    assert await _calm(watch, 5.0, said.append, every_s=0.01) is False     # unreadable: no wait, and said
    assert len(said) == 1 and said[0].startswith("baseline: Prometheus' alerts could not be read")


def _grid(since: float, first: float, last: float) -> list:
    """ALERTS samples as query_range(start=since - 5, step=1) gives them from ``first`` to ``last``."""
    import math

    k0 = math.ceil(first - (since - 5))
    k1 = math.floor(last - (since - 5))
    return [[since - 5 + k, "1"] for k in range(k0, k1 + 1)]


async def _history(series: list, since: float, end: float) -> AlertWatch:
    import httpx

    def prometheus(req: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"status": "success", "data": {"resultType": "matrix", "result": series}})

    watch = AlertWatch("http://prom", ("VoiceTurnLatencyErrorBudgetBurnFast",), since,
                       transport=httpx.MockTransport(prometheus))
    await watch.history(end)
    await watch.close()
    return watch


async def test_an_alert_without_for_that_fired_just_before_the_fault_on_the_query_grid_is_not_its_detection():
    """CI, 2026-12-06, as it was (review): the burn-rate alert has no `for:`
    (a firing series only), it became active at 998.9 with the fault at
    1000.2, and its first sample on the query's grid is 999.2 = since - 1:
    counted as the fault's at -1.0 s by the old reading."""
    labels = {"alertname": "VoiceTurnLatencyErrorBudgetBurnFast", "alertstate": "firing"}
    watch = await _history([{"metric": labels, "values": _grid(1000.2, 998.9, 1060.0)}], 1000.2, 1060.0)
    assert (watch.alert, watch.pending_at, watch.firing_at) == (None, None, None)
    assert (watch.before, watch.before_cleared_at) == ("VoiceTurnLatencyErrorBudgetBurnFast", None)


async def test_an_alert_without_for_found_only_in_history_is_pending_and_firing_at_once():
    labels = {"alertname": "VoiceTurnLatencyErrorBudgetBurnFast", "alertstate": "firing"}
    watch = await _history([{"metric": labels, "values": _grid(1000.2, 1012.5, 1040.0)}], 1000.2, 1060.0)
    assert (watch.alert, watch.pending_at, watch.firing_at, watch.before) == (
        "VoiceTurnLatencyErrorBudgetBurnFast", 1013.2, 1013.2, None)


async def test_an_alert_active_at_the_fault_start_that_ended_during_it_says_when():
    labels = {"alertname": "VoiceTurnLatencyErrorBudgetBurnFast", "alertstate": "firing"}
    watch = await _history([{"metric": labels, "values": _grid(1000.2, 990.0, 1020.0)}], 1000.2, 1060.0)
    assert (watch.alert, watch.before) == (None, "VoiceTurnLatencyErrorBudgetBurnFast")
    assert watch.before_cleared_at == pytest.approx(1019.2 + 1.0)     # its last grid sample, + a step
