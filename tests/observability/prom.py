"""A real Prometheus for the observability tier: the committed scrape config
pointed at a test stack's ports, the committed rules (optionally rewritten
with short `for:` durations, for the test only), fast scrapes and rule
evaluation, and the HTTP API queries the tests assert on.

Production keeps its `for:` values; a test that must see an alert go pending
and firing (or, as importantly, never do so) in seconds rewrites a copy."""
from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml

from tests.procs import ROOT, free_port

PROMETHEUS = shutil.which("prometheus")
PROM_DIR = ROOT / "observability" / "prometheus"


def get(url: str, timeout: float = 10) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def query(prom_url: str, expr: str, at: float | None = None) -> list[dict]:
    params = {"query": expr} | ({"time": f"{at:.3f}"} if at is not None else {})
    data = get(f"{prom_url}/api/v1/query?" + urllib.parse.urlencode(params))
    assert data["status"] == "success", data
    return data["data"]["result"]


def wait_for(pred: Callable[[], Any], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def rules_with_short_for(out: Path, for_: str) -> list[Path]:
    """Copy the committed rule files into ``out`` with every alert's `for:`
    set to ``for_`` (alerts without one, the burn-rate alerts, stay as they
    are); return the new paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for src in sorted((PROM_DIR / "rules").glob("*.yml")):
        doc = yaml.safe_load(src.read_text())
        for group in doc["groups"]:
            for rule in group["rules"]:
                if "for" in rule:
                    rule["for"] = for_
        dst = out / src.name
        dst.write_text(yaml.safe_dump(doc, sort_keys=False))
        paths.append(dst)
    return paths


def config(targets: dict[str, str], rule_files: list[Path], interval: str = "1s") -> dict:
    """The committed prometheus.yml with ``targets`` (job -> host:port) as the
    only scrape targets, and scrapes and rule evaluation every ``interval``."""
    cfg = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    cfg["global"] |= {"scrape_interval": interval, "evaluation_interval": interval}
    cfg["rule_files"] = [str(p) for p in rule_files]
    jobs = []
    for job in cfg["scrape_configs"]:
        if job["job_name"] in targets:
            job["static_configs"][0]["targets"] = [targets[job["job_name"]]]
            jobs.append(job)
    assert {j["job_name"] for j in jobs} == set(targets), "a target without a job in prometheus.yml"
    cfg["scrape_configs"] = jobs
    return cfg


@contextlib.contextmanager
def running(cfg: dict, tmp: Path, ready_timeout: float = 60) -> Iterator[str]:
    """Prometheus on a free port with ``cfg``, its data and log under ``tmp``;
    yields its base URL, stops it on exit."""
    cfg_path = tmp / "prometheus.yml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    log_path = tmp / "prometheus.log"
    url = f"http://127.0.0.1:{free_port()}"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={cfg_path}", f"--storage.tsdb.path={tmp / 'data'}",
             f"--web.listen-address={url.removeprefix('http://')}"],
            stdout=log, stderr=subprocess.STDOUT)
    try:
        def ready() -> bool:
            try:
                urllib.request.urlopen(f"{url}/-/ready", timeout=2)
                return True
            except OSError:
                assert proc.poll() is None, log_path.read_text()[-3000:]
                return False

        wait_for(ready, ready_timeout, "Prometheus ready")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def alerting_rules(prom_url: str) -> list[dict]:
    groups = get(f"{prom_url}/api/v1/rules")["data"]["groups"]
    return [r for g in groups for r in g["rules"] if r["type"] == "alerting"]


def active_alerts(prom_url: str) -> list[dict]:
    """Alerts pending or firing now."""
    return get(f"{prom_url}/api/v1/alerts")["data"]["alerts"]
