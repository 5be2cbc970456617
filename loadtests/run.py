"""`make load` / `make test-load`: run Locust headless against the gateway
(the one `make run` started, or a stack of its own on free loopback ports),
print the figures, and exit non-zero when the SLO gate fails
(loadtests/slo_gate.py: voice-to-voice p95, failed turns, barge-in p95).

    python -m loadtests.run [--users 2] [--spawn-rate 0.5] [--run-time 60s]
                            [--host ws://127.0.0.1:8000 | (none: start the stack)]
                            [--shape step --step-users 1 --step-seconds 60 --max-users 8]
                            [--slo-v2v-p95-ms 1200] [--slo-failed-turn-ratio 0]
                            [--slo-barge-in-p95-ms 300]

Locust's CSV and HTML reports and the unrounded samples (samples.jsonl) land
in --out (default artifacts/loadtest/)."""
from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

from loadtests import slo_gate

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "artifacts" / "loadtest"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=2, help="concurrent conversations, steady shape (default 2)")
    p.add_argument("--spawn-rate", type=float, default=0.5,
                   help="users started per second: people start a few seconds apart (default 0.5)")
    p.add_argument("--run-time", default="60s", help="test duration, Locust syntax (default 60s)")
    p.add_argument("--host", "--url", dest="url", default="",
                   help="gateway base, ws://127.0.0.1:PORT (default: start the stack on free ports)")
    p.add_argument("--shape", choices=("steady", "step"), default="steady",
                   help="steady (--users for --run-time) or step (default steady)")
    p.add_argument("--step-users", type=int, default=1, help="step shape: users added per step (default 1)")
    p.add_argument("--step-seconds", type=float, default=60, help="step shape: seconds per step (default 60)")
    p.add_argument("--max-users", type=int, default=8, help="step shape: last step's users (default 8)")
    p.add_argument("--out", type=Path, default=OUT, help=f"report folder (default {OUT.relative_to(ROOT)})")
    slo_gate.add_flags(p)
    a = p.parse_args(argv)
    if not 1 <= max(a.users, a.max_users) <= 50:
        p.error("users must be 1..50 on a shared machine")
    if a.url and urlparse(a.url).hostname not in LOOPBACK:
        p.error("only loopback targets are allowed")
    return a


def run_locust(base: str, out: Path, *, users: int, spawn_rate: float, run_time: str,
               env: dict[str, str] | None = None, html: bool = True) -> list[slo_gate.Sample]:
    """One headless Locust run; returns its unrounded samples. Locust's own
    exit code is not the verdict (the gate is), so it is not consulted."""
    out.mkdir(parents=True, exist_ok=True)
    samples = out / "samples.jsonl"
    samples.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "locust", "-f", str(ROOT / "loadtests" / "locustfile.py"),
           "--headless", "--only-summary", "--stop-timeout", "40", "--host", base,
           "--csv", str(out / "locust"), "--exit-code-on-error", "0"]
    if (env or {}).get("LOAD_SHAPE") != "step":      # a shape sets users and time itself
        cmd += ["-u", str(users), "-r", str(spawn_rate), "-t", run_time]
    if html:
        cmd += ["--html", str(out / "locust.html")]
    print(" ".join(cmd), flush=True)
    full_env = dict(os.environ, PYTHONPATH=f"{ROOT}:{ROOT / 'gen'}", LOAD_SAMPLES=str(samples)) | (env or {})
    subprocess.run(cmd, cwd=ROOT, env=full_env, check=False)
    return slo_gate.read_samples(samples)


def read_stats(prefix: Path) -> list[dict[str, str]]:
    with open(f"{prefix}_stats.csv", newline="") as f:
        return list(csv.DictReader(f))


def summarise(rows: list[dict[str, str]]) -> str:
    lines = [f"{'type':<8}{'name':<20}{'reqs':>6}{'fails':>6}{'p50':>8}{'p95':>8}{'max':>8}  (ms, Locust-rounded)"]
    for r in rows:
        lines.append(f"{r['Type']:<8}{r['Name']:<20}{r['Request Count']:>6}{r['Failure Count']:>6}"
                     f"{r['50%']:>8}{r['95%']:>8}{float(r['Max Response Time']):>8.0f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stack, base = None, args.url
    if not base:
        sys.path[:0] = [str(ROOT), str(ROOT / "gen")]
        from tests.stack import start_stack   # the runner may start a stack; the locustfile never imports tests/
        print("starting the stack (5 services + gateway)...", flush=True)
        stack = start_stack()
        base = f"ws://{stack.gateway.address}"
    env = {"LOAD_SHAPE": args.shape}
    if args.shape == "step":
        env |= {"LOAD_STEP_USERS": str(args.step_users), "LOAD_STEP_SECONDS": str(args.step_seconds),
                "LOAD_MAX_USERS": str(args.max_users), "LOAD_SPAWN_RATE": str(args.spawn_rate)}
    try:
        samples = run_locust(base, args.out, users=args.users, spawn_rate=args.spawn_rate,
                             run_time=args.run_time, env=env)
    finally:
        if stack is not None:
            stack.stop()
    try:
        print("\n" + summarise(read_stats(args.out / "locust")))
    except OSError as exc:
        print(f"no Locust stats: {exc}")
    verdict = slo_gate.judge(samples, slo_gate.thresholds(args))
    f = verdict.figures
    print(f"\nSLO gate ({args.shape}, {args.users if args.shape == 'steady' else args.max_users} users, "
          f"{args.run_time}): voice_to_voice p50 {f['v2v_p50_ms']:.0f} / p95 {f['v2v_p95_ms']:.0f} ms, "
          f"final transcript p95 {f['transcript_p95_ms']:.0f} ms, {f['turns']:.0f} turns, "
          f"{f['barge_ins']:.0f} barge-ins, {f['refused_connects']:.0f} refused connects")
    print("\n".join("  " + ln for ln in verdict.lines))
    print("SLO gate passed" if verdict.ok else "SLO gate FAILED")
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
