"""python -m drills NAME: run one drill against a running stack.

    python -m drills --list
    python -m drills tts-errors --admin-key "$GATEWAY_ADMIN_API_KEYS" --prometheus http://127.0.0.1:9090
    python -m drills canary-bad --admin-key ... --redis-url redis://127.0.0.1:6379/0

The gateway must have GATEWAY_ADMIN_API_KEYS set (the drill's key); the
admin key comes from --admin-key or the DRILL_ADMIN_KEY environment
variable. Exit status 0 when the system recovered, no history was lost and,
with a Prometheus, every panel the runbook sends on-call to showed the fault;
1 otherwise, with the reasons on the report's last line (an alert not seen is
reported, not failed: production `for:` durations are longer than a drill).
A release drill (canary-bad) also needs the gateways' Redis, where release
records live, and a gateway with a canary pool for the service."""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
from pathlib import Path

from clients.clips import load_clips
from drills.restart import restart_with
from drills.runner import briefing, run_drill
from drills.scenarios import SCENARIOS
from common.components import REDIS_URL


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m drills", description=__doc__.splitlines()[0])
    p.add_argument("name", nargs="?", help=f"the drill: {', '.join(SCENARIOS)}")
    p.add_argument("--list", action="store_true", help="list the drills and what each teaches")
    p.add_argument("--gateway", default=os.environ.get("DRILL_GATEWAY", "http://127.0.0.1:8000"),
                   help="gateway base URL (env DRILL_GATEWAY; default http://127.0.0.1:8000)")
    p.add_argument("--admin-key", default=os.environ.get("DRILL_ADMIN_KEY", ""),
                   help="an admin key of the gateway (env DRILL_ADMIN_KEY; default none)")
    p.add_argument("--prometheus", default=os.environ.get("DRILL_PROMETHEUS", ""),
                   help="Prometheus base URL, to measure time to detect (env DRILL_PROMETHEUS; default none)")
    p.add_argument("--fault-seconds", type=float, default=None, help="fault duration (default: the drill's own)")
    p.add_argument("--users", type=int, default=None, help="people talking (default: the drill's own)")
    p.add_argument("--restart-cmd", default=os.environ.get("DRILL_RESTART_CMD", ""),
                   help="gateway-restart: the shell command that restarts your gateway, e.g. 'docker compose "
                        "restart gateway' or 'kubectl rollout restart deployment/gateway' (env "
                        "DRILL_RESTART_CMD; default none: the drill never kills a process itself)")
    p.add_argument("--redis-url", default=os.environ.get("DRILL_REDIS_URL", os.environ.get("RELEASE_REDIS_URL",
                                                                                            REDIS_URL)),
                   help=f"release drills: the gateways' Redis (env DRILL_REDIS_URL, then RELEASE_REDIS_URL; "
                        f"default {REDIS_URL})")
    p.add_argument("--redis-password-file", default=os.environ.get("RELEASE_REDIS_PASSWORD_FILE", ""),
                   help="release drills: file holding the Redis password (env RELEASE_REDIS_PASSWORD_FILE)")
    p.add_argument("--min-samples", type=int, default=None,
                   help="release drills: canary turns the judge needs per rule (default: the drill's own)")
    p.add_argument("--report", default="", help="also write the report as JSON to this file (default none)")
    args = p.parse_args(argv)
    if args.list or not args.name:
        for sc in SCENARIOS.values():
            print("\n".join(briefing(sc, sc.fault_s)) + "\n")
        return 0 if args.list else 2
    sc = SCENARIOS.get(args.name)
    if sc is None:
        p.error(f"no drill {args.name!r}; one of {', '.join(SCENARIOS)}")
    if sc.faults and not args.admin_key:
        p.error("this drill injects a fault: give the gateway's admin key (--admin-key or DRILL_ADMIN_KEY)")
    if sc.restarts_gateway and not args.restart_cmd:
        p.error("this drill restarts the gateway: give the command that does it (--restart-cmd)")
    restart = (lambda: restart_with(args.restart_cmd, args.gateway.rstrip("/"))) if args.restart_cmd else None
    report = asyncio.run(_run(sc, args, restart))
    if args.report:
        Path(args.report).write_text(json.dumps(dataclasses.asdict(report), indent=2))
    return 1 if report.failures else 0


async def _run(sc, args: argparse.Namespace, restart):
    store = None
    if sc.release:
        from release.store import RedisReleaseStore

        pw = Path(args.redis_password_file).read_text().strip() if args.redis_password_file else None
        store = RedisReleaseStore(args.redis_url, pw or None)
    try:
        return await run_drill(sc, http_url=args.gateway.rstrip("/"), admin_key=args.admin_key,
                               clips=load_clips(), prometheus=args.prometheus or None,
                               fault_s=args.fault_seconds, users=args.users, restart=restart,
                               release_store=store, judge_min_samples=args.min_samples)
    finally:
        if store is not None:
            await store.close()


if __name__ == "__main__":
    sys.exit(main())
