"""Invariant: a healthy stack under normal traffic pages no one. The five
speech services and the gateway run on their real models; Debian's Prometheus
scrapes them every second and evaluates every committed alerting rule every
second, with each `for:` cut to a few seconds in a copy of the rules (the
committed rules keep theirs). A user talks to the assistant (spoken turns
heard to their end, one barge-in, a text turn) for longer than every `for:`,
then, after a further `for:` has passed, no alert is pending or firing, and
none was at any time since Prometheus started. A rule that fires on healthy
traffic (as VoiceModelNotLoaded did on the gateway's constant 0) fails it.

The one exception: an SLO burn-rate alert whose SLO really had a bad event
in the run (a turn over the latency target on a busy shared host) is a true
alert, not a false one; it is reported as a warning, never silently passed."""
from __future__ import annotations

import asyncio
import dataclasses
import json
import importlib.util
import time
import warnings
from typing import Iterator

import pytest

from clients import events
from clients.realtime import RealtimeClient
from observability import slo
from common.components import COMPONENTS, SPEECH_SERVICES
from tests.observability import prom

MISSING = [c.module for c in COMPONENTS if importlib.util.find_spec(c.module + ".__main__") is None]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(prom.PROMETHEUS is None, reason="Debian prometheus not installed (make install-dev)"),
    pytest.mark.skipif(bool(MISSING), reason=f"stack incomplete, missing: {', '.join(MISSING)}"),
]
RATE = 24000
TURN_TIMEOUT = 120          # a loaded 2-core machine
FOR_S = 10                  # every alert's `for:` in this test's copy of the rules
TRAFFIC_S = 4 * FOR_S       # talk at least this long: an alert pending on traffic would fire
SPOKEN = ("0890", "0920", "0930", "0880")


def _note(turns: list[dict], kind: str, done) -> None:
    """What the gateway reported for a response: its status and timings."""
    from tests.e2e.talk import metadata

    raw = metadata(done).get("timings")
    v2v = json.loads(raw).get("voice_to_voice_ms") if raw else None
    turns.append({"kind": kind, "status": (done.get("response") or {}).get("status"), "v2v_ms": v2v})


async def _spoken_turns(ws_url: str, min_s: float, turns: list[dict]) -> None:
    """Spoken turns in one session, each answered and heard to its end, then a
    short pause, as a person talks; at least one round of clips, and on until
    ``min_s`` have passed."""
    from tests.e2e.talk import clip

    t0, n = time.monotonic(), 0
    async with RealtimeClient(ws_url) as rt:
        await rt.update_session(events.session_config(input_rate=RATE, output_rate=RATE))
        mic = rt.start_microphone(RATE)
        while n < len(SPOKEN) or time.monotonic() - t0 < min_s:
            pcm, _, _ = clip(SPOKEN[n % len(SPOKEN)], RATE)
            mark = rt.mark()
            mic.play(pcm)
            _note(turns, "spoken", await rt.wait_for("response.done", since=mark, timeout=TURN_TIMEOUT))
            await rt.wait_for("output_audio_buffer.stopped", since=mark, timeout=TURN_TIMEOUT)
            n += 1
            await asyncio.sleep(1.0)


async def _barge_in(ws_url: str, turns: list[dict]) -> None:
    """A long reply the user talks over; the next answer completes."""
    from tests.e2e.talk import LONG_REPLY_INSTRUCTIONS, clip

    a_pcm, _, _ = clip("0880", RATE)
    b_pcm, _, _ = clip("0870", RATE)
    async with RealtimeClient(ws_url) as rt:
        await rt.update_session(events.session_config(input_rate=RATE, output_rate=RATE,
                                                      instructions=LONG_REPLY_INSTRUCTIONS))
        mic = rt.start_microphone(RATE)
        mic.play(a_pcm)
        await rt.wait_for("response.output_audio.delta", timeout=TURN_TIMEOUT)
        await asyncio.sleep(0.4)
        mark = rt.mark()
        mic.play(b_pcm)
        await rt.wait_for("output_audio_buffer.cleared", since=mark, timeout=30)
        first = await rt.wait_for("response.done", since=mark, timeout=30)
        _note(turns, "interrupted", first)
        _note(turns, "after barge-in", await rt.wait_for("response.done", since=first.index + 1,
                                                         timeout=TURN_TIMEOUT))


async def _text_turn(ws_url: str, turns: list[dict]) -> None:
    async with RealtimeClient(ws_url) as rt:
        await rt.update_session(events.session_config(turn_detection=None))
        await rt.create_user_text("What colour is the sky on a clear day?")
        mark = rt.mark()
        await rt.send(events.response_create(output_modalities=["text"]))
        _note(turns, "text", await rt.wait_for("response.done", since=mark, timeout=TURN_TIMEOUT))


async def _normal_traffic(ws_url: str) -> list[dict]:
    turns: list[dict] = []
    await _barge_in(ws_url, turns)
    await _text_turn(ws_url, turns)
    await _spoken_turns(ws_url, TRAFFIC_S, turns)
    return turns


@dataclasses.dataclass
class QuietRun:
    url: str              # Prometheus
    ready: float          # when Prometheus was ready (epoch s)
    traffic: tuple[float, float]  # when the traffic started and ended
    turns: list[dict]     # per response: kind, status, voice_to_voice_ms the gateway reported

    def report(self) -> str:
        return "; ".join(f"{t['kind']} {t['status']} v2v={t['v2v_ms']}" for t in self.turns)


@pytest.fixture(scope="module")
def quiet_run(tmp_path_factory) -> Iterator[QuietRun]:
    from tests.stack import start_stack

    tmp = tmp_path_factory.mktemp("prometheus-quiet")
    stack = start_stack()
    try:
        rules = prom.rules_with_short_for(tmp / "rules", f"{FOR_S}s")
        with prom.running(prom.config(stack.metrics_targets(), rules), tmp) as url:
            ready = time.time()
            prom.wait_for(lambda: len(prom.query(url, "up == 1")) == len(COMPONENTS), 30, "every target up")
            t0 = time.time()
            turns = asyncio.run(_normal_traffic(stack.ws_url))
            t1 = time.time()
            # Anything that went pending during the traffic has had its `for:`
            # to fire; a few more evaluations for slack.
            time.sleep(FOR_S + 5)
            yield QuietRun(url, ready, (t0, t1), turns)
    finally:
        stack.stop()


def test_every_alert_ran_on_the_short_for_and_saw_the_traffic(quiet_run):
    """The rest would pass vacuously if the rules were not loaded, not
    evaluated, or blind to the traffic."""
    url, (t0, t1) = quiet_run.url, quiet_run.traffic
    print(f"traffic {t1 - t0:.0f} s: {quiet_run.report()}")  # shown with -rA
    assert t1 - t0 > TRAFFIC_S > FOR_S
    rules = prom.alerting_rules(url)
    assert len(rules) >= 10
    assert all(r["health"] == "ok" for r in rules), [(r["name"], r.get("lastError")) for r in rules]
    assert all(r["duration"] <= FOR_S for r in rules), [(r["name"], r["duration"]) for r in rules]
    assert [t["status"] for t in quiet_run.turns if t["kind"] != "interrupted"] == \
        ["completed"] * (len(quiet_run.turns) - 1), quiet_run.report()
    total = prom.query(url, "sum(voice_gateway_turns_total)")
    assert total and float(total[0]["value"][1]) >= len(quiet_run.turns), (total, quiet_run.report())
    assert prom.query(url, "sum(voice_gateway_barge_in_reaction_seconds_count) >= 1")
    # The gateway observes voice to voice for completed responses only.
    voiced = sum(t["v2v_ms"] is not None and t["status"] == "completed" for t in quiet_run.turns)
    assert prom.query(url, f"sum(voice_gateway_voice_to_voice_seconds_count) >= {voiced}")
    # Exported at 0 from the gateway's start, so rate() sees the first turn too.
    assert prom.query(url, 'voice_gateway_turns_total{outcome="failed"} == 0')
    # The SLO ratios the burn-rate alerts read exist (they are not quiet for lack of data).
    assert prom.query(url, 'voice_slo:error_ratio:rate5m{slo="voice_to_voice_latency"}')


def test_only_the_speech_services_report_a_model_and_all_are_loaded(quiet_run):
    loaded = {r["metric"]["job"]: r["value"][1] for r in prom.query(quiet_run.url, "voice_model_loaded")}
    assert loaded == {c.name: "1" for c in SPEECH_SERVICES}


def _bad_events(url: str) -> dict[str, float]:
    """SLO name -> bad events the gateway counted since it started (raw
    counters, not the rules' rates): the events an SLO alert may fire on."""
    def hist_over(metric: str, le: float) -> str:
        return f'sum({metric}_count) - sum({metric}_bucket{{le="{le}"}})'

    exprs = {
        "turn_success": 'sum(voice_gateway_turns_total{outcome="failed"})',
        "voice_to_voice_latency": hist_over("voice_gateway_voice_to_voice_seconds", slo.VOICE_TO_VOICE_TARGET_S),
        "barge_in_reaction": hist_over("voice_gateway_barge_in_reaction_seconds", slo.BARGE_IN_TARGET_S),
    }
    assert set(exprs) == {s.name for s in slo.SLOS}, "an SLO without its bad-event count here"
    return {name: sum(float(r["value"][1]) for r in prom.query(url, e)) for name, e in exprs.items()}


def _unexcused(alerts: list[dict[str, str]], url: str) -> list[dict[str, str]]:
    """The alerts (label sets) a healthy run must not have. An SLO alert is
    excused only when its SLO really had a bad event (a turn over the
    latency target on a busy 2-core host is a real miss, not a false alert);
    it is reported as a warning. Every other alert is never excused."""
    bad = _bad_events(url)
    excused = [a for a in alerts if bad.get(a.get("slo", ""), 0) > 0]
    if excused:
        warnings.warn(f"SLO alerts on real bad events {bad}: "
                      f"{sorted({(a['alertname'], a.get('alertstate', '')) for a in excused})}")
    return [a for a in alerts if a not in excused]


def test_no_alert_is_pending_or_firing_now(quiet_run):
    alerts = [a["labels"] | {"alertstate": a["state"]} for a in prom.active_alerts(quiet_run.url)]
    left = _unexcused(alerts, quiet_run.url)
    assert not left, ([(a["alertname"], a["alertstate"]) for a in left], quiet_run.report())


def test_no_alert_was_pending_or_firing_at_any_time(quiet_run):
    window = int(time.time() - quiet_run.ready) + 2
    seen = [r["metric"] for r in prom.query(quiet_run.url, f"max_over_time(ALERTS[{window}s])")]
    left = _unexcused(seen, quiet_run.url)
    assert not left, ([(a["alertname"], a["alertstate"]) for a in left], quiet_run.report())
