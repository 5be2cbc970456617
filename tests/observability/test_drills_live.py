"""Drills against the real stack with a real Prometheus (docs/drills.md).

Each test runs a drill exactly as `make drill` does (drills/runner.py: real
speech from real clips over the Realtime WebSocket, the fault set through the
gateway's /admin/faults and ended by itself) against a stack of its own,
scraped by Debian's Prometheus with the committed rules, `for:` shortened to
5 s and 1 s scrapes and evaluation (the test's, never production's). A
fault ends 5 s after its alert fires (90 s at most): detection and recovery
are what is tested, and waiting out a detected fault cost CI minutes.

Invariants: the drill's alert goes pending/firing while the fault lasts; the
panels the drill sends on-call to show the fault (each moves the way the
scenario says, read from Prometheus with the dashboard's own queries); the
system recovers after it ends (a turn completes, no reconnect needed); no
session history is lost (every item a client saw done is remembered, and for
the Redis drill, is in Redis itself). Each drill's measured times are written
to var/drills/<name>.json (docs/drills.md quotes them)."""
from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import json
import os
import shutil
from typing import Iterator

import pytest
import redis

from clients.clips import load_clips
from drills.runner import run_drill
from drills.scenarios import SCENARIOS
from common.components import COMPONENTS
from tests.observability import prom
from tests.procs import ROOT
from tests.stack import Stack, start_stack

PROMETHEUS = shutil.which("prometheus")
MISSING = [c.module for c in COMPONENTS if importlib.util.find_spec(c.module + ".__main__") is None]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(PROMETHEUS is None, reason="Debian prometheus not installed (make install-dev)"),
    pytest.mark.skipif(bool(MISSING), reason=f"stack incomplete, missing: {', '.join(MISSING)}"),
]
ADMIN_KEY = "drill-admin-key-0123456789"
SHORT_FOR = "5s"
FAULT_S = 90.0           # the most a fault lasts: ~10 turns of two people on a 2-core host
CANARY_FAULT_S = 240.0   # the canary drill: ~10 canary turns of three people at 50 %
CANARY_GOOD_WAIT_S = 330.0   # judged every 30 s; held for want of canary turns at most 240 s
ASR_CANARY_WAIT_S = 600.0   # check at 60 s, then the probes: 2 x 179 background ASR passes (250 s measured)
# Canary turns per rule (production: 30). canary-good needs only the path to a
# promotion (a pass; the judge holds the comparison with stable until the
# sizes could show a difference, 3 canary against 8 stable or 4 against 5:
# 175 s in one run, 116-148 before that hold); canary-bad keeps 5: with 3 canary turns the Mann-Whitney
# comparison cannot reach its alpha against fewer than 8 stable turns even when
# every canary turn is the slowest, so on a host where stable breaks the latency
# limit too (the hard rule then defers to it) a bad canary could not fail.
GOOD_MIN_SAMPLES, BAD_MIN_SAMPLES = 3, 5
CANARY_BAD_INTERVAL_S = 10.0
END_AFTER_FIRING_S = 5.0  # a fault ends this long after its alert fires (detection is what is measured)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    # The TTS canary pool is the TTS itself: the canary drill's fault hits only
    # the calls routed to the canary (no release record: no session goes there).
    st = start_stack(gateway_env={"GATEWAY_ADMIN_API_KEYS": ADMIN_KEY}, canary=("tts",))
    try:
        yield st
    finally:
        st.stop()


@pytest.fixture
def live(stack, tmp_path) -> Iterator[tuple[Stack, str]]:
    """The module's stack, and a Prometheus of this test's own: each drill's
    alerts start from a clean history (an earlier drill's burn-rate alert,
    still active over its 1 h window, would hide this one's detection)."""
    rules = prom.rules_with_short_for(tmp_path / "rules", SHORT_FOR)
    with prom.running(prom.config(stack.metrics_targets(), rules), tmp_path) as url:
        yield stack, url


async def _drill(live, name: str, **kw):
    st, prom_url = live
    scenario = kw.pop("scenario", SCENARIOS[name])
    try:
        report = await run_drill(scenario, http_url=st.http_url, admin_key=ADMIN_KEY, clips=load_clips(),
                                 prometheus=prom_url, fault_s=kw.pop("fault_s", FAULT_S),
                                 end_after_firing_s=kw.pop("end_after_firing_s", END_AFTER_FIRING_S), **kw)
    except RuntimeError as exc:     # the stack was not healthy: say what its processes said
        raise RuntimeError(f"{exc}\n{st.log_tails()}") from exc
    out = ROOT / "var" / "drills"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(dataclasses.asdict(report), indent=2))
    return report


async def _release_drill(live, name: str, **kw):
    """A release drill with the stack's Redis as the release store: (report,
    the service's release record after it)."""
    from release.store import RedisReleaseStore

    st, _ = live
    store = RedisReleaseStore(st.gateway.extra_env["GATEWAY_REDIS_URL"])
    try:
        report = await _drill(live, name, release_store=store, **kw)
        return report, (await store.load_all())[SCENARIOS[name].release]
    finally:
        await store.close()


def _detected_and_recovered(report, name: str, fault_s: float = FAULT_S) -> None:
    sc = SCENARIOS[name]
    if report.alert_before is not None and report.detect_pending_s is None \
            and (report.before_cleared_s is None or report.before_cleared_s > report.fault_s / 2):
        # The host broke this alert's SLO before the fault (seen 2026-12-02 and
        # 2026-12-06 on a slow shared host: two people's turns over 1.2 s), the
        # drill's wait for it to end (runner._calm) ran out, and it lasted into
        # the fault's second half: detection cannot be shown. An activation that
        # ended earlier left the fault time enough to raise its own: asserted.
        pytest.skip(f"{report.alert_before} already active before the fault: {report.lines()}")
    assert report.alert in sc.alerts, report.lines()
    assert report.detect_pending_s is not None and report.detect_pending_s < fault_s, report.lines()
    assert report.detect_firing_s is not None, report.lines()
    assert report.recover_s is not None, report.lines()
    assert report.lost == {}, report.lines()
    assert report.panels and not report.panels_missed, report.lines()


async def test_tts_errors_drill(live):
    # Half the TTS calls, not the scenario's 20 %: two people give ~6 turns in
    # the 90 s fault, and in one CI run (2026-12-02) a 20 % fault hit none of
    # them (no failed turn, so no alert to detect). Still a partial failure.
    sc = SCENARIOS["tts-errors"]
    half = dataclasses.replace(sc, faults=tuple({**f, "rate": 0.5} for f in sc.faults))
    report = await _drill(live, "tts-errors", scenario=half)
    _detected_and_recovered(report, "tts-errors")
    assert report.outcomes["during"].get("failed", 0) >= 1, report.lines()
    assert any(e.startswith("backend_unavailable: tts at ") for e in report.errors), report.errors


async def test_llm_hung_drill(live):
    report = await _drill(live, "llm-hung")
    _detected_and_recovered(report, "llm-hung")
    assert any(e.startswith("backend_unavailable: llm at ") for e in report.errors), report.errors


async def test_vad_hung_drill(live):
    """A VAD that accepts audio and answers nothing is seen by its missing
    progress: the speech-input page fires and hearing comes back after."""
    report = await _drill(live, "vad-hung")
    _detected_and_recovered(report, "vad-hung")
    assert any(e.startswith("backend_unavailable: vad at ") for e in report.errors), report.errors


async def test_redis_down_drill(live):
    st, _ = live
    report = await _drill(live, "redis-down")
    _detected_and_recovered(report, "redis-down")
    # What was said while Redis was away was written back: Redis itself holds
    # every item the clients saw done (not only this gateway's memory).
    r = redis.Redis.from_url(st.gateway.extra_env["GATEWAY_REDIS_URL"])
    assert report.sessions, report.lines()
    for sid, seen in report.sessions.items():
        raw = r.get(f"voice:session:{sid}")
        assert raw is not None, f"session {sid} is not in Redis"
        stored = {item["id"] for item in json.loads(raw)["items"]}
        assert set(seen) <= stored, f"session {sid}: {set(seen) - stored} not written back"


async def test_gateway_restart_drill(live):
    """Sessions outlive the gateway process: clients reconnect with their id
    and carry on, with every item they saw (it was in Redis)."""
    st, _ = live
    report = await _drill(live, "gateway-restart", restart=lambda: asyncio.to_thread(st.restart_gateway))
    # Down ~1 s, often between two scrapes: VoiceComponentDown and Components
    # up may never see it (seen both ways here); the restarts panel always does.
    assert report.panels and not report.panels_missed, report.lines()
    assert report.recover_s is not None, report.lines()
    assert report.lost == {}, report.lines()
    assert report.outcomes["after"].get("completed", 0) >= 1, report.lines()


async def test_asr_slow_drill(live):
    report = await _drill(live, "asr-slow")
    _detected_and_recovered(report, "asr-slow")


async def test_asr_down_drill(live):
    report = await _drill(live, "asr-down")
    _detected_and_recovered(report, "asr-down")
    assert any(e.startswith("backend_unavailable: asr at ") for e in report.errors), report.errors


@pytest.mark.skipif(os.environ.get("VOICE_SLOW_DRILLS") != "1",
                    reason="~3-4 min (the judge holds until the canary has its turns, then two steps); "
                           "VOICE_SLOW_DRILLS=1 runs it. Its pieces run in CI: the canary's routing, samples "
                           "and labels (tests/e2e/test_release_stack.py), the judge's verdicts on a live stack "
                           "(test_canary_bad_drill), promotion (tests/unit/test_release_controller.py)")
async def test_canary_good_drill(live):
    """A canary no worse than stable (the TTS canary pool is the TTS itself, no
    fault) goes 50 % -> 100 % and is promoted by the judge, with no alert and
    nothing lost; the drill then withdraws it (weight 0), so the next drill
    starts from stable. Before canary-bad, whose rolled-back record stays."""
    # Two people: with one, a 50 % hash over a few conversations gave the canary 2 turns
    # in 5 min (2026-12-04), and the release was aborted as inconclusive.
    # GOOD_MIN_SAMPLES: what is shown is the judge's path from real samples to a
    # promotion on the real stack; its statistics have unit tests.
    report, rel = await _release_drill(live, "canary-good", judge_min_samples=GOOD_MIN_SAMPLES, users=2,
                                       fault_s=CANARY_GOOD_WAIT_S)
    out = report.release
    assert out is not None, report.lines()
    if out.state == "rolled_back" and out.rule.startswith("hard:p95:") \
            and out.check.get("stable_p95", 0) > 0.8 * out.check.get("limit", float("inf")):
        # Stable near the limit too (a host at the SLO's edge), not over it: the
        # limit stands, and a p95 of the canary's 3 turns is its slowest turn.
        pytest.skip(f"the host is at the SLO's edge for stable too: {report.lines()}")
    assert out.state == "promoted", report.lines()
    assert out.counts.get("canary", 0) >= GOOD_MIN_SAMPLES, report.lines()
    assert report.recover_s is not None and report.lost == {}, report.lines()
    assert report.panels and not report.panels_missed, report.lines()
    assert report.failures == [], report.lines()
    assert (rel.state, rel.weight) == ("aborted", 0.0)      # withdrawn by the drill at its end


async def test_canary_bad_drill(live):
    """The judge, not a person, catches a bad release: a TTS canary 1.5 s late
    (the fault hits only calls routed to the canary) is rolled back by a hard
    latency rule, weight 0 at once; VoiceReleaseRolledBack fires; new
    conversations go to stable and are answered; nothing is lost. The
    rolled-back record stays (the incident's record): later drills are not
    disturbed, their alerts are other ones or another backend's."""
    # Three people, 5 canary turns per rule (production: 30), at most 4 min.
    # Judged every 10 s, not the scenario's 30: the judge decides at the first
    # check with its 5 canary turns, and CI waited up to 20 s more for it.
    sc = dataclasses.replace(SCENARIOS["canary-bad"], release_interval_s=CANARY_BAD_INTERVAL_S)
    report, rel = await _release_drill(live, "canary-bad", scenario=sc, judge_min_samples=BAD_MIN_SAMPLES,
                                       users=3, fault_s=CANARY_FAULT_S)
    _detected_and_recovered(report, "canary-bad", CANARY_FAULT_S)
    assert report.release is not None and report.release.state == "rolled_back", report.lines()
    # A hard latency limit, or (stable over the SLO too on a slow host) the comparison.
    assert report.release.rule.startswith(("hard:p95:", "mann_whitney:")), report.lines()
    assert report.release.counts.get("canary", 0) >= BAD_MIN_SAMPLES, report.lines()
    assert (rel.state, rel.weight) == ("rolled_back", 0.0)
    assert report.outcomes["after"].get("completed", 0) >= 1, report.lines()


@pytest.mark.skipif(os.environ.get("VOICE_SLOW_DRILLS") != "1",
                    reason="~6 min (the probes: 2 x 179 ASR passes); VOICE_SLOW_DRILLS=1 runs it. Its pieces run "
                           "in CI: the slice probe failing tiny.en (tests/integration/test_release_probes.py) and "
                           "a release drill end to end (test_canary_bad_drill)")
async def test_canary_asr_worse_drill(live):
    """A canary fast but worse: a second ASR on Whisper tiny.en is the ASR
    canary pool. Nothing is injected; the judge's quality probes (the eval
    set through both) fail it at the step's check time and roll it back;
    VoiceReleaseRolledBack fires; conversations carry on. After the TTS
    drill: the gateway restarts with the ASR canary pool (sessions resume)."""
    from tests.procs import running

    st, _ = live
    with running("services.asr", "ASR_", {"ASR_MODEL": "tiny.en"}) as tiny:
        st.gateway.extra_env["GATEWAY_ASR_CANARY_ADDRS"] = tiny.address
        st.restart_gateway()
        # One person: the probes' background passes share the host with live turns.
        report, rel = await _release_drill(live, "canary-asr-worse", users=1, fault_s=ASR_CANARY_WAIT_S)
    _detected_and_recovered(report, "canary-asr-worse", ASR_CANARY_WAIT_S)
    assert report.release is not None and report.release.state == "rolled_back", report.lines()
    assert report.release.rule == "quality:asr_slices", report.lines()
    assert (rel.state, rel.weight) == ("rolled_back", 0.0)


async def test_overload_drill(live):
    """More people than the gateway admits (3 talking, 2 more arriving with
    the "fault", for GATEWAY_MAX_SESSIONS=3):
    the extra ones are refused at connect (server_busy) and keep retrying,
    which opens the VoiceSessionsRefused ticket (the admitted users' SLOs
    see nothing), the admitted ones are answered throughout, nothing is lost. Last: the
    gateway restarts with a session limit (and without the ASR canary pool
    of the test above, whose service is gone)."""
    st, _ = live
    st.gateway.extra_env.pop("GATEWAY_ASR_CANARY_ADDRS", None)
    st.gateway.extra_env["GATEWAY_MAX_SESSIONS"] = "3"
    st.restart_gateway()
    # The admitted users must be answered *during* the overload, so the fault
    # lasts long enough to hold one of their turns (speech, answer, listening:
    # up to ~20 s on a slow host; with 5 s after the alert fired, CI saw an
    # 18 s window with no turn of theirs ending in it, 2026-12-07).
    report = await _drill(live, "overload", fault_s=45.0, end_after_firing_s=20.0)
    _detected_and_recovered(report, "overload", 45.0)
    refused = report.outcomes["during"].get("refused", 0) + report.outcomes["before"].get("refused", 0)
    assert refused >= 1, report.lines()
    assert report.outcomes["during"].get("completed", 0) >= 1, report.lines()
    assert report.recover_s is not None and report.lost == {}, report.lines()
    assert set(report.outcomes["during"]) <= {"completed", "refused", "cancelled"}, report.lines()
