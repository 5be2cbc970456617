"""`make test-load`: start the whole stack on free loopback ports, run Locust
headless with a small bounded load against it, print the figures, and exit
non-zero when the failure ratio is above the threshold (or nothing ran).

    python -m loadtests.run [--users 3] [--spawn-rate 1] [--run-time 60s]
                            [--max-failure-ratio 0.05] [--url ws://127.0.0.1:8000]"""
from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "artifacts" / "loadtest"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=3, help="concurrent voice sessions (default 3)")
    p.add_argument("--spawn-rate", type=float, default=1.0, help="users started per second (default 1)")
    p.add_argument("--run-time", default="60s", help="test duration, Locust syntax (default 60s)")
    p.add_argument("--max-failure-ratio", type=float, default=0.05,
                   help="fail when failed/total requests exceeds this (default 0.05)")
    p.add_argument("--url", default="", help="existing gateway base, ws://127.0.0.1:PORT "
                   "(default: start the stack on free ports)")
    a = p.parse_args(argv)
    if a.users < 1 or a.users > 50:
        p.error("--users must be 1..50 on a shared machine")
    if a.url and urlparse(a.url).hostname not in LOOPBACK:
        p.error("only loopback targets are allowed")
    return a


def read_stats(prefix: Path) -> list[dict[str, str]]:
    with open(f"{prefix}_stats.csv", newline="") as f:
        return list(csv.DictReader(f))


def summarise(rows: list[dict[str, str]]) -> tuple[int, int, str]:
    head = f"{'type':<8}{'name':<24}{'reqs':>6}{'fails':>6}{'p50':>8}{'p95':>8}{'max':>8}  (ms)"
    lines = [head]
    total = fails = 0
    for r in rows:
        n, f = int(r["Request Count"]), int(r["Failure Count"])
        lines.append(f"{r['Type']:<8}{r['Name']:<24}{n:>6}{f:>6}{r['50%']:>8}{r['95%']:>8}"
                     f"{float(r['Max Response Time']):>8.0f}")
        if r["Name"] == "Aggregated":
            total, fails = n, f
    return total, fails, "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    prefix = OUT / "locust"
    stack = None
    base = args.url
    if not base:
        sys.path[:0] = [str(ROOT), str(ROOT / "gen")]
        from tests.stack import start_stack
        print("starting the stack (5 services + gateway)...", flush=True)
        stack = start_stack()
        base = f"ws://{stack.gateway.address}"
    try:
        cmd = [sys.executable, "-m", "locust", "-f", str(ROOT / "loadtests" / "locustfile.py"),
               "--headless", "--only-summary", "-u", str(args.users), "-r", str(args.spawn_rate),
               "-t", args.run_time, "--stop-timeout", "30", "--host", base,
               "--csv", str(prefix), "--exit-code-on-error", "0"]
        print(" ".join(cmd), flush=True)
        env = dict(os.environ, PYTHONPATH=f"{ROOT}:{ROOT / 'gen'}")
        rc = subprocess.run(cmd, cwd=ROOT, env=env).returncode
    finally:
        if stack is not None:
            stack.stop()
    if rc != 0:
        print(f"locust exited with {rc}")
        return rc
    total, fails, table = summarise(read_stats(prefix))
    print("\n" + table)
    ratio = fails / total if total else 1.0
    print(f"\nfailure ratio {ratio:.1%} (threshold {args.max_failure_ratio:.1%}) over {total} requests, "
          f"{args.users} users, {args.run_time}")
    if total == 0:
        print("no requests completed")
        return 1
    return 1 if ratio > args.max_failure_ratio else 0


if __name__ == "__main__":
    sys.exit(main())
