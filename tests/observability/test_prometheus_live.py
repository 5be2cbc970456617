"""Invariant: the observability layer works against the real thing. Debian's
Prometheus, run with the project's config and generated rules (targets
rewritten to this test's ports), scrapes all five speech services and the
gateway on their real models while a client speaks real turns and barges in
over the Realtime WebSocket; then every query on every dashboard panel
returns data, every recording and alerting rule evaluates without error, the
SLO series exist, and the turn's trace reaches the OTLP collector with spans
from the services it called."""
from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from typing import Any, Iterator

import pytest
import yaml

from dashboards.boards import boards
from dashboards.grafana import exprs
from observability.alerts import PLAIN_ALERTS
from observability.slo import SLOS
from common.components import COMPONENTS, SPEECH_SERVICES
from tests.observability.otlp_sink import OtlpSink
from tests.observability.prom import get, query, wait_for
from tests.procs import ROOT, free_port

PROMETHEUS = shutil.which("prometheus")
MISSING = [c.module for c in COMPONENTS if importlib.util.find_spec(c.module + ".__main__") is None]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(PROMETHEUS is None, reason="Debian prometheus not installed (make install-dev)"),
    pytest.mark.skipif(bool(MISSING), reason=f"stack incomplete, missing: {', '.join(MISSING)}"),
]
PROM_ACCEPT = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
RATE = 24000
TURN_TIMEOUT = 120       # a loaded 2-core machine
LONG_REPLY = ("You are a storyteller. Answer every message with a long story of at least "
              "eight full sentences. Never answer briefly.")


@dataclasses.dataclass
class Live:
    prom_url: str
    sink: OtlpSink
    stack: Any
    response_ids: list[str]
    trace_ids: list[str]       # from response.done metadata, when the gateway reports it
    config: dict               # the Prometheus config the test runs


def prometheus_config(targets: dict[str, str]) -> dict:
    """The committed prometheus.yml with this test's targets, 1 s scrapes and
    rule evaluation, and the rules by absolute path."""
    cfg = yaml.safe_load((ROOT / "observability/prometheus/prometheus.yml").read_text())
    cfg["global"] |= {"scrape_interval": "1s", "evaluation_interval": "1s"}
    cfg["rule_files"] = [str(ROOT / "observability/prometheus" / f) for f in cfg["rule_files"]]
    jobs = []
    for job in cfg["scrape_configs"]:
        if job["job_name"] in targets:
            job["static_configs"][0]["targets"] = [targets[job["job_name"]]]
            jobs.append(job)
    assert {j["job_name"] for j in jobs} == {c.name for c in COMPONENTS}
    cfg["scrape_configs"] = jobs
    return cfg


async def _speak_turns(ws_url: str) -> tuple[list[str], list[str]]:
    """Two plain spoken turns, then a reply interrupted by speech (barge-in)."""
    from clients import events
    from clients.realtime import RealtimeClient
    from tests.e2e.talk import clip

    rids, tids = [], []

    def note(done) -> None:
        resp = done.get("response") or {}
        rids.append(resp.get("id"))
        tid = (resp.get("metadata") or {}).get("trace_id")
        if tid:
            tids.append(tid)

    for name in ("0890", "0920"):
        pcm, _, _ = clip(name, RATE)
        async with RealtimeClient(ws_url) as rt:
            await rt.update_session(events.session_config(input_rate=RATE, output_rate=RATE))
            rt.start_microphone(RATE).play(pcm)
            note(await rt.wait_for("response.done", timeout=TURN_TIMEOUT))

    a_pcm, _, _ = clip("0880", RATE)
    b_pcm, _, _ = clip("0870", RATE)
    async with RealtimeClient(ws_url) as rt:
        await rt.update_session(events.session_config(input_rate=RATE, output_rate=RATE,
                                                      instructions=LONG_REPLY))
        mic = rt.start_microphone(RATE)
        mic.play(a_pcm)
        await rt.wait_for("response.output_audio.delta", timeout=TURN_TIMEOUT)
        await asyncio.sleep(0.4)
        mark = rt.mark()
        mic.play(b_pcm)
        await rt.wait_for("output_audio_buffer.cleared", since=mark, timeout=30)
        first = await rt.wait_for("response.done", since=mark, timeout=30)
        note(first)
        note(await rt.wait_for("response.done", since=first.index + 1, timeout=TURN_TIMEOUT))
    return rids, tids


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> Iterator[Live]:
    from tests.stack import start_stack

    tmp = tmp_path_factory.mktemp("prometheus")
    with OtlpSink() as sink:
        # Export spans every 0.5 s instead of 5 s so the test does not wait.
        stack = start_stack(service_env={"SVC_OTLP_ENDPOINT": sink.endpoint,
                                         "OTEL_BSP_SCHEDULE_DELAY": "500"})
        prom = None
        try:
            cfg_path = tmp / "prometheus.yml"
            config = prometheus_config(stack.metrics_targets())
            cfg_path.write_text(yaml.safe_dump(config))
            port = free_port()
            log = open(tmp / "prometheus.log", "wb")
            prom = subprocess.Popen(
                [PROMETHEUS, f"--config.file={cfg_path}", f"--storage.tsdb.path={tmp / 'data'}",
                 f"--web.listen-address=127.0.0.1:{port}", "--enable-feature=exemplar-storage"],
                stdout=log, stderr=subprocess.STDOUT)
            url = f"http://127.0.0.1:{port}"

            def ready() -> bool:
                try:
                    urllib.request.urlopen(f"{url}/-/ready", timeout=2)
                    return True
                except OSError:
                    assert prom.poll() is None, (tmp / "prometheus.log").read_text()[-3000:]
                    return False

            wait_for(ready, 60, "Prometheus ready")
            rids, tids = asyncio.run(_speak_turns(stack.ws_url))
            # Four responses (two turns, the interrupted one, its successor) and one barge-in scraped.
            wait_for(lambda: query(url, "sum(voice_gateway_turns_total) >= 4")
                      and query(url, "sum(voice_gateway_barge_in_reaction_seconds_count) >= 1"),
                      60, "turns and the barge-in in Prometheus")
            time.sleep(3)  # a few more scrapes so every 5 m rate has two samples after the turns
            yield Live(url, sink, stack, rids, tids, config)
        finally:
            if prom is not None:
                prom.terminate()
                prom.wait(30)
            stack.stop()


def test_every_component_is_scraped(live):
    up = {r["metric"]["job"]: r["value"][1] for r in query(live.prom_url, "up")}
    assert up == {c.name: "1" for c in COMPONENTS}


def test_every_dashboard_panel_query_returns_data(live):
    empty = []
    for board in boards().values():
        for title, expr in exprs(board):
            if not query(live.prom_url, expr):
                empty.append(f"{board['uid']} / {title}: {expr}")
    assert not empty, "panels without data:\n" + "\n".join(empty)


def test_every_rule_evaluates_and_slo_series_exist(live):
    groups = get(f"{live.prom_url}/api/v1/rules")["data"]["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert sum(r["type"] == "alerting" for r in rules) == 2 * len(SLOS) + len(PLAIN_ALERTS)   # all loaded
    bad = [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    assert not bad, bad
    for name in ("voice_slo:error_ratio:rate5m", "voice_slo:burn_rate:rate1h",
                 "voice_slo:error_budget_remaining:ratio"):
        got = {r["metric"]["slo"] for r in query(live.prom_url, name)}
        assert got == {s.name for s in SLOS}, (name, got)
    # A turn that failed would show here; the ones we drove completed or were cancelled.
    ratio = query(live.prom_url, 'voice_slo:error_ratio:rate5m{slo="turn_success"}')
    assert float(ratio[0]["value"][1]) == 0.0


def test_latency_exemplars_lead_to_traces(live):
    # Where Prometheus scrapes the gateway, asking as Prometheus asks.
    job = next(j for j in live.config["scrape_configs"] if j["job_name"] == "gateway")
    url = f"http://{job['static_configs'][0]['targets'][0]}{job.get('metrics_path', '/metrics')}"
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Accept": PROM_ACCEPT}), timeout=5) as r:
        if not r.headers["Content-Type"].startswith("application/openmetrics-text"):
            pytest.skip(f"the gateway's {url} ignores Accept and serves text only, so Prometheus gets "
                        "no exemplars: it should return common.metrics.exposition(accept_header)")
    now = time.time()
    data = get(f"{live.prom_url}/api/v1/query_exemplars?" + urllib.parse.urlencode(
        {"query": "voice_gateway_voice_to_voice_seconds_bucket", "start": now - 600, "end": now}))
    trace_ids = {e["labels"]["trace_id"] for s in data["data"] for e in s["exemplars"]}
    assert trace_ids, data
    assert live.sink.wait_for(lambda spans: any(s.trace_id in trace_ids for s in spans))


def _turn_traces(live: Live) -> list[list]:
    """Traces rooted at a gateway turn span (one trace per user turn)."""
    spans = live.sink.spans()
    with_turn = {s.trace_id for s in spans if s.service == "gateway" and s.name == "turn"}
    return [[s for s in spans if s.trace_id == t] for t in with_turn]


def test_a_turn_trace_has_spans_from_every_service(live):
    every = {"gateway", *(c.name for c in SPEECH_SERVICES)}
    assert live.sink.wait_for(lambda _: any(every <= {s.service for s in tr} for tr in _turn_traces(live)),
                              timeout=20), [sorted({s.service for s in tr}) for tr in _turn_traces(live)]
    trace = next(tr for tr in _turn_traces(live) if every <= {s.service for s in tr})
    by_id = {s.span_id: s for s in trace}
    turns = [s for s in trace if s.name == "turn"]
    assert len(turns) == 1 and not turns[0].parent_span_id, "one root turn span per trace"
    turn = turns[0]

    def ancestors(s):
        while s.parent_span_id in by_id:
            s = by_id[s.parent_span_id]
            yield s

    # Every span of the trace descends from the turn, and every speech
    # service's span hangs off a gateway span: the context went through gRPC
    # metadata (or, for the long-lived VAD/ASR streams, in-band), not by
    # accident of timing.
    for s in trace:
        if s is not turn:
            assert turn in list(ancestors(s)), s
        if s.service != "gateway":
            assert by_id[s.parent_span_id].service == "gateway", s
    # VAD's speech segment and ASR's utterance sit right under the turn; RAG,
    # LLM and TTS under the response's stage spans.
    under_turn = {s.name for s in trace if s.parent_span_id == turn.span_id}
    assert {"vad.speech_segment", "asr.utterance", "response"} <= under_turn, under_turn
    response = next(s for s in trace if s.name == "response")
    in_response = {s.service for s in trace if s.service in ("rag", "llm", "tts")
                   and response in list(ancestors(s))}
    assert in_response == {"rag", "llm", "tts"}, in_response
