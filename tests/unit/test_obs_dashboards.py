"""Invariant: the committed dashboards are what dashboards/generate.py makes;
every board has a fixed unique uid and queries the one provisioned
datasource; every query names only metrics from docs/metrics.md (the
contract services emit) or series our recording rules produce, so a renamed
metric breaks this test instead of silently emptying a panel."""
from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from dashboards import generate
from dashboards.boards import boards
from dashboards.grafana import DATASOURCE_UID, exprs
from observability.generate import recorded_names
from common.components import SPEECH_SERVICES

ROOT = Path(__file__).resolve().parents[2]
EXPECTED_UIDS = {"voice-overview", "voice-canary", "voice-stage-gateway",
                 *(f"voice-stage-{c.name}" for c in SPEECH_SERVICES)}
PROMQL_WORDS = {"by", "on", "or", "and", "unless", "without", "ignoring", "group_left",
                "group_right", "bool", "offset", "inf", "nan"}


def contract_metrics() -> set[str]:
    """Metric names in docs/metrics.md tables (first column), plus Prometheus' own `up`."""
    names = {"up"}
    for line in (ROOT / "docs" / "metrics.md").read_text().splitlines():
        if line.startswith("| `"):
            names |= set(re.findall(r"`([a-z_:][a-z0-9_:]*)`", line.split("|")[1]))
    return names


def metric_names(expr: str) -> set[str]:
    """Series names an expression selects (functions, keywords, labels dropped)."""
    s = re.sub(r'"[^"]*"', "", expr)                 # label values, label_replace args
    s = re.sub(r"\{[^}]*\}", "", s)                  # matchers
    s = re.sub(r"\[[^\]]*\]", "", s)                 # ranges
    s = re.sub(r"\b(by|on|without|ignoring)\s*\([^)]*\)", "", s)
    names = set()
    for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", s):
        rest = s[m.end():].lstrip()
        if rest.startswith("(") or m.group(0).lower() in PROMQL_WORDS:
            continue
        names.add(re.sub(r"_(bucket|count|sum)$", "", m.group(0)))
    return names


def test_committed_json_is_current(tmp_path):
    generate.write(tmp_path)
    for fresh in sorted(tmp_path.glob("*.json")):
        committed = ROOT / "dashboards" / fresh.name
        assert committed.exists(), f"{committed} missing: run `make dashboards`"
        assert committed.read_text() == fresh.read_text(), f"{committed.name} is stale: run `make dashboards`"
    stale = {p.name for p in (ROOT / "dashboards").glob("*.json")} - {p.name for p in tmp_path.glob("*.json")}
    assert not stale, f"dashboards no generator makes: {stale}"


def test_uids_fixed_unique_and_datasource_consistent():
    all_boards = boards()
    uids = [b["uid"] for b in all_boards.values()]
    assert sorted(uids) == sorted(EXPECTED_UIDS)
    ds = yaml.safe_load((ROOT / "dashboards/provisioning/datasources/prometheus.yml").read_text())
    assert [d["uid"] for d in ds["datasources"]] == [DATASOURCE_UID]
    for b in all_boards.values():
        ids = [p["id"] for p in b["panels"]]
        assert len(ids) == len(set(ids)), b["uid"]
        for p in b["panels"]:
            assert p["gridPos"]["x"] + p["gridPos"]["w"] <= 24, (b["uid"], p["title"])
            if p["type"] == "row":
                continue
            assert p["datasource"]["uid"] == DATASOURCE_UID
            assert p["targets"], (b["uid"], p["title"])
            assert all(tg["datasource"]["uid"] == DATASOURCE_UID for tg in p["targets"])


def test_every_query_uses_contract_metrics_or_recorded_series():
    known = contract_metrics() | recorded_names()
    for b in boards().values():
        for title, expr in exprs(b):
            names = metric_names(expr)
            assert names, (b["uid"], title, expr)
            assert names <= known, f"{b['uid']} / {title}: unknown {names - known} in {expr}"


def test_metric_name_extraction_sees_through_promql():
    expr = ('histogram_quantile(0.95, sum by (le, stage) (rate(voice_gateway_stage_seconds_bucket'
            '{service="gateway"}[5m]))) or 0 * sum by (variant) (rate(voice_rpc_requests_total[5m]))')
    assert metric_names(expr) == {"voice_gateway_stage_seconds", "voice_rpc_requests_total"}
    assert "made_up_metric" in metric_names("sum(made_up_metric) or vector(0)")


def test_overview_answers_the_on_call_questions():
    overview = " ".join(e for _, e in exprs(boards()["overview"]))
    for needle in ("voice_gateway_active_sessions", "voice_gateway_turns_total",
                   "histogram_quantile(0.5, sum by (le) (rate(voice_gateway_voice_to_voice_seconds_bucket",
                   "histogram_quantile(0.95, sum by (le) (rate(voice_gateway_voice_to_voice_seconds_bucket",
                   "histogram_quantile(0.99, sum by (le) (rate(voice_gateway_voice_to_voice_seconds_bucket",
                   'outcome="failed"', "voice_gateway_stage_seconds",
                   "voice_slo:error_budget_remaining:ratio", "voice_slo:burn_rate:rate1h"):
        assert needle in overview, needle


def test_stage_boards_cover_red_and_saturation_and_canary_splits_by_variant():
    all_boards = boards()
    for c in SPEECH_SERVICES:
        text = " ".join(e for _, e in exprs(all_boards[f"stage-{c.name}"]))
        for needle in ("voice_rpc_requests_total", "voice_rpc_errors_total", "voice_rpc_duration_seconds",
                       "voice_rpc_in_flight", "process_cpu_seconds_total", "process_resident_memory_bytes"):
            assert needle in text, (c.name, needle)
    release_panels = 0
    for title, expr in exprs(all_boards["canary"]):
        # The release row shows the controller's weights and verdicts per
        # backend (docs/releases.md); every other panel compares the variants.
        if "voice_release_" in expr or "voice_gateway_canary_fallbacks_total" in expr:
            release_panels += 1
            continue
        assert "variant" in expr, title
    assert release_panels == 5


def test_provisioning_points_grafana_at_the_dashboards():
    prov = yaml.safe_load((ROOT / "dashboards/provisioning/dashboards/dashboards.yml").read_text())
    assert prov["providers"][0]["type"] == "file"
    json.loads((ROOT / "dashboards" / "overview.json").read_text())  # valid JSON
