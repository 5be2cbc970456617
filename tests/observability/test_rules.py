"""Invariant: Prometheus accepts our config and rules (`promtool check`), the
promtool unit tests show every alert firing on its failure and staying quiet
on normal traffic, those tests fail when a burn-rate rule is wrong, and every
dashboard query is valid PromQL."""
from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from dashboards.boards import boards
from dashboards.grafana import exprs
from observability import generate, slo

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "observability" / "prometheus"
PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian: apt-get install prometheus; make install-dev)")


def promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_config_and_rules_pass_promtool_check():
    r = promtool("check", "config", str(PROM / "prometheus.yml"))
    assert r.returncode == 0, r.stdout + r.stderr
    r = promtool("check", "rules", *map(str, sorted((PROM / "rules").glob("*.yml"))))
    assert r.returncode == 0, r.stdout + r.stderr


def test_promtool_unit_tests_pass():
    tests = sorted(p.name for p in (PROM / "tests").glob("*_test.yml"))
    assert "voice_alerts_test.yml" in tests and len(tests) == len(slo.SLOS) + 1
    r = promtool("test", "rules", *tests, cwd=PROM / "tests")
    assert r.returncode == 0, r.stdout + r.stderr


def test_promtool_tests_catch_a_wrong_burn_threshold(tmp_path, monkeypatch):
    """Page at 20x instead of 14.4x: the 16x burn no longer pages, so the
    (unchanged) scenarios must fail."""
    fast, slow = slo.BURN_ALERTS
    wrong = dataclasses.replace(fast, windows=(dataclasses.replace(fast.windows[0], factor=20.0),
                                               dataclasses.replace(fast.windows[1], factor=20.0)))
    monkeypatch.setattr(generate, "BURN_ALERTS", (wrong, slow))
    generate.write(tmp_path)
    committed_test = PROM / "tests" / "slo_turn_success_test.yml"
    (tmp_path / "tests" / committed_test.name).write_text(committed_test.read_text())
    r = promtool("test", "rules", committed_test.name, cwd=tmp_path / "tests")
    assert r.returncode != 0 and "VoiceTurnErrorsErrorBudgetBurnFast" in r.stdout + r.stderr


def test_every_dashboard_query_parses(tmp_path):
    """promtool has no expression check; a recording rule per query makes
    `check rules` parse them all."""
    rules = [{"record": f"dashboard:q{i}", "expr": e}
             for i, e in enumerate(sorted({e for b in boards().values() for _, e in exprs(b)}))]
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    r = promtool("check", "rules", str(path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{len(rules)} rules found" in r.stdout
