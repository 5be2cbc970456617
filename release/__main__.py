"""``python -m release``: operate canary releases (docs/releases.md).

    python -m release start --service tts [--steps 5,25,50,100] [--interval 300] [--hold-limit 1800]
    python -m release status [--json]
    python -m release promote --service tts
    python -m release abort --service tts [--reason "..."]
    python -m release events [--service tts] [--limit 50] [--json]
    python -m release run [--poll 10] [--min-samples 30] [--alpha 0.01] [--margin 0.1] [--probes]
                          [--heartbeat-file F]   (liveness: python -m release.alive F MAX_AGE_S)

Redis comes from --redis-url, then RELEASE_REDIS_URL, then the stack's default
(the gateways' GATEWAY_REDIS_URL must name the same Redis); a password, if
any, from --redis-password-file / RELEASE_REDIS_PASSWORD_FILE. ``run`` is the
control loop; the other commands act once and exit (status 2 when the command
is illegal in the release's state, e.g. start while one progresses)."""
from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from common.clock import WallClock
from release.controller import Conflict, Controller
from release.judge import JudgeConfig
from release.machine import IllegalTransition
from release.probes import Prober, QualityConfig
from release.state import DEFAULT_HOLD_LIMIT_S, DEFAULT_INTERVAL_S, DEFAULT_STEPS, SERVICES
from release.store import RedisReleaseStore
from common.components import REDIS_URL, by_name


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m release", description=__doc__.split("\n")[0])
    p.add_argument("--redis-url", default=os.environ.get("RELEASE_REDIS_URL", REDIS_URL),
                   help=f"Redis shared with the gateways (env RELEASE_REDIS_URL; default {REDIS_URL})")
    p.add_argument("--redis-password-file", default=os.environ.get("RELEASE_REDIS_PASSWORD_FILE", ""),
                   help="file holding the Redis password (env RELEASE_REDIS_PASSWORD_FILE; default: none, "
                        "or the URL's own)")
    sub = p.add_subparsers(dest="cmd", required=True)
    st = sub.add_parser("start", help="start a release at its first step")
    st.add_argument("--service", required=True, choices=SERVICES)
    st.add_argument("--steps", default=",".join(f"{s:g}" for s in DEFAULT_STEPS),
                    help="canary weights in %%, the last one final (default %(default)s)")
    st.add_argument("--interval", type=float, default=DEFAULT_INTERVAL_S,
                    help="seconds at a step before it is judged (default %(default)s)")
    st.add_argument("--hold-limit", type=float, default=DEFAULT_HOLD_LIMIT_S,
                    help="seconds a step may stay inconclusive before the release aborts (default %(default)s)")
    s = sub.add_parser("status", help="every service's release")
    s.add_argument("--json", action="store_true")
    for name, text in (("promote", "jump to the final weight now"), ("abort", "weight 0 now")):
        c = sub.add_parser(name, help=text)
        c.add_argument("--service", required=True, choices=SERVICES)
        if name == "abort":
            c.add_argument("--reason", default="operator abort")
    e = sub.add_parser("events", help="decisions, oldest first")
    e.add_argument("--service", choices=SERVICES)
    e.add_argument("--limit", type=int, default=50)
    e.add_argument("--json", action="store_true")
    r = sub.add_parser("run", help="the control loop: judge and step active releases")
    d = JudgeConfig()
    r.add_argument("--poll", type=float, default=10.0, help="seconds between ticks (default %(default)s)")
    r.add_argument("--min-samples", type=int, default=d.min_samples, help="default %(default)s")
    r.add_argument("--alpha", type=float, default=d.alpha, help="default %(default)s")
    r.add_argument("--margin", type=float, default=d.margin, help="default %(default)s")
    r.add_argument("--max-failure-ratio", type=float, default=d.max_failure_ratio, help="default %(default)s")
    r.add_argument("--heartbeat-file", default=os.environ.get("RELEASE_HEARTBEAT_FILE", ""),
                   help="touch this file before and after every tick; `python -m release.alive FILE "
                        "MAX_AGE_S` is the liveness check (default: $RELEASE_HEARTBEAT_FILE, else none)")
    r.add_argument("--probes", action="store_true",
                   help="also run the quality probes of ASR, TTS and LLM releases at each check "
                        "(release/probes.py)")
    r.add_argument("--rag", default=_first(os.environ.get("GATEWAY_RAG_ADDRS", "")) or by_name("rag").address,
                   help="RAG address the LLM probe retrieves its passages from (default: the first of "
                        f"$GATEWAY_RAG_ADDRS, else {by_name('rag').address})")
    r.add_argument("--rag-k", type=int, default=os.environ.get("GATEWAY_RAG_K", "3"),
                   help="passages the LLM probe asks with, as the gateway retrieves them "
                        "(default: $GATEWAY_RAG_K, else %(default)s)")
    r.add_argument("--rag-min-score", type=float, default=os.environ.get("GATEWAY_RAG_MIN_SCORE", "0.3"),
                   help="the LLM probe drops passages below this score, as the gateway does "
                        "(default: $GATEWAY_RAG_MIN_SCORE, else %(default)s)")
    for svc in ("asr", "tts", "llm"):
        for variant in ("stable", "canary"):
            env = f"GATEWAY_{svc.upper()}{'_CANARY' if variant == 'canary' else ''}_ADDRS"
            fallback = by_name(svc).address if variant == "stable" else ""
            r.add_argument(f"--{svc}-{variant}", default=_first(os.environ.get(env, "")) or fallback,
                           help=f"{variant} {svc.upper()} address the probes use (default: the first of "
                                f"${env}{', else ' + fallback if fallback else ''})")
    return p


def _first(addrs: str) -> str:
    return next((a.strip() for a in addrs.split(",") if a.strip()), "")


def _when(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def format_event(e: dict[str, Any]) -> str:
    line = (f"{_when(e['ts'])} {e['service']:<4} {e['event']:<13} {e['from']['state']} "
            f"{e['from']['weight']:g}% -> {e['to']['state']} {e['to']['weight']:g}%  "
            f"[{e.get('actor')}] {e.get('rule')}: {e.get('reason')}")
    if "counts" in e:
        line += f"  (turns: {e['counts']['canary']} canary, {e['counts']['stable']} stable)"
    return line


async def _main(args: argparse.Namespace) -> int:
    password = Path(args.redis_password_file).read_text().strip() if args.redis_password_file else None
    store = RedisReleaseStore(args.redis_url, password or None)
    ctl = Controller(store, WallClock())
    try:
        if args.cmd == "start":
            steps = [float(x) for x in args.steps.split(",") if x.strip()]
            print((await ctl.start(args.service, steps, args.interval, args.hold_limit)).summary())
        elif args.cmd == "promote":
            print((await ctl.promote(args.service)).summary())
        elif args.cmd == "abort":
            print((await ctl.abort(args.service, args.reason)).summary())
        elif args.cmd == "status":
            rels = await ctl.status()
            if args.json:
                print(json.dumps({k: json.loads(v.to_json()) for k, v in sorted(rels.items())}, indent=2))
            for svc in SERVICES if not args.json else ():
                print(rels[svc].summary() if svc in rels else f"{svc}: no release (gateways use "
                      "GATEWAY_CANARY_PERCENT)")
        elif args.cmd == "events":
            for e in await store.events(args.service, args.limit):
                print(json.dumps(e) if args.json else format_event(e))
        elif args.cmd == "run":
            ctl.cfg = JudgeConfig(min_samples=args.min_samples, alpha=args.alpha, margin=args.margin,
                                  max_failure_ratio=args.max_failure_ratio)
            if args.probes:
                ctl.probe = Prober(args.asr_stable, args.asr_canary, args.tts_stable, args.tts_canary,
                                   llm_stable=args.llm_stable, llm_canary=args.llm_canary, rag=args.rag,
                                   cfg=QualityConfig(rag_k=args.rag_k, rag_min_score=args.rag_min_score))
            logging.info("release controller on %s: poll %.0f s, %s", args.redis_url, args.poll, ctl.cfg)
            beat = Path(args.heartbeat_file) if args.heartbeat_file else None
            await ctl.run(args.poll, heartbeat=beat.touch if beat is not None else None)
    except (IllegalTransition, ValueError, Conflict) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        await store.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = _parser().parse_args(argv)
    try:
        return asyncio.run(_main(args))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
