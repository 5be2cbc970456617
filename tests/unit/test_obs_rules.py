"""Invariant: the committed Prometheus config, rule files and SLO promtool
tests are exactly what `make rules` generates; every alert has a summary, a
severity and a runbook that exists and says what to look at first and how to
mitigate; the burn-rate alerts follow the SRE workbook (thresholds = factor x
budget, windows spend the workbook's share of a 30-day budget); Prometheus
scrapes every component where common/components.py says it listens."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from observability import generate
from observability.slo import BUDGET_DAYS, BURN_ALERTS, SLOS, WINDOWS
from common.components import COMPONENTS

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "observability" / "prometheus"


def _hours(window: str) -> float:
    n, unit = int(window[:-1]), window[-1]
    return n * {"m": 1 / 60, "h": 1, "d": 24}[unit]


def _all_rules() -> list[dict]:
    rules = []
    for path in sorted((PROM / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            rules += group["rules"]
    return rules


def test_committed_files_are_current(tmp_path):
    generate.write(tmp_path)
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.yml"))
    assert fresh, "generator wrote nothing"
    for rel in fresh:
        committed = PROM / rel
        assert committed.exists(), f"{committed} missing: run `make rules`"
        assert committed.read_text() == (tmp_path / rel).read_text(), f"{rel} is stale: run `make rules`"
    generated_rules = {p.name for p in (tmp_path / "rules").glob("*.yml")}
    assert {p.name for p in (PROM / "rules").glob("*.yml")} == generated_rules, "stray rule file"


def test_every_alert_has_summary_severity_and_an_existing_runbook():
    alerts = [r for r in _all_rules() if "alert" in r]
    assert len(alerts) == 2 * len(SLOS) + 14
    for a in alerts:
        assert a["labels"]["severity"] in ("page", "ticket"), a["alert"]
        assert a["annotations"]["summary"].strip(), a["alert"]
        url = a["annotations"]["runbook_url"]
        assert url == f"docs/runbooks/{a['alert']}.md"
        text = (ROOT / url).read_text()
        assert text.startswith(f"# {a['alert']}\n")
        assert "## First look" in text and "## Mitigate" in text, url
        assert re.search(r"roll (it |the \w+ )?back|rollback", text, re.I), f"{url}: no rollback step"


def test_runbook_links_resolve():
    for page in (ROOT / "docs" / "runbooks").glob("*.md"):
        for target in re.findall(r"\]\(([^)#:]+\.md)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


def test_burn_rate_windows_spend_the_workbook_share_of_the_budget():
    # Workbook table: 2 % of the budget in 1 h and 5 % in 6 h page; 10 % in 1 d / 3 d opens a ticket.
    expected = {("page", "1h"): 0.02, ("page", "6h"): 0.05, ("ticket", "1d"): 0.10, ("ticket", "3d"): 0.10}
    budget_hours = BUDGET_DAYS * 24
    for alert in BURN_ALERTS:
        for bw in alert.windows:
            spent = bw.factor * _hours(bw.long) / budget_hours
            assert spent == pytest.approx(expected[(alert.severity, bw.long)]), (alert.severity, bw)
            assert bw.long in WINDOWS and bw.short in WINDOWS
            assert _hours(bw.short) == pytest.approx(_hours(bw.long) / 12)  # workbook: short = long / 12


def test_alert_thresholds_are_factor_times_budget():
    rules = {r["alert"]: r for r in _all_rules() if "alert" in r}
    for slo in SLOS:
        for alert in BURN_ALERTS:
            expr = rules[slo.alert_prefix + alert.suffix]["expr"]
            for bw in alert.windows:
                threshold = bw.factor * (1 - slo.objective)
                for w in (bw.long, bw.short):
                    pattern = rf'voice_slo:error_ratio:rate{w}{{slo="{slo.name}"}} > ([0-9.e-]+)'
                    found = [float(x) for x in re.findall(pattern, expr)]
                    assert found and all(x == pytest.approx(threshold) for x in found), (slo.name, w, expr)


def test_recording_rules_cover_every_window_of_every_slo():
    recorded = {(r["record"], r["labels"]["slo"]) for r in _all_rules() if "record" in r}
    for slo in SLOS:
        for w in WINDOWS:
            assert (f"voice_slo:error_ratio:rate{w}", slo.name) in recorded
        assert ("voice_slo:error_budget_remaining:ratio", slo.name) in recorded


def test_prometheus_scrapes_every_component_and_loads_the_rules():
    cfg = yaml.safe_load((PROM / "prometheus.yml").read_text())
    targets = {j["job_name"]: j["static_configs"][0]["targets"] for j in cfg["scrape_configs"]}
    for c in COMPONENTS:
        assert targets[c.name] == [f"127.0.0.1:{c.metrics_port}"], c.name
    assert cfg["rule_files"] == ["rules/*.yml"]
