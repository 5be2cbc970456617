"""`python -m stack.probe TARGET`: one health check, exit 0 when healthy, 1 when not.

What container healthchecks run (Docker, compose). TARGET is one of
  host:port           gRPC health (grpc.health.v1, service "") must say SERVING
  http://host:port/p  HTTP GET must answer 200
  a component name    (asr, gateway, ...) its own port on 127.0.0.1, read from
                      <PREFIX>PORT when set so a moved port is still probed right
With no TARGET, $VOICE_COMPONENT names the component (the images set it).

It reuses stack.health so compose, the supervisor and the tests agree on what
"healthy" means; a loading model (NOT_SERVING) is unhealthy on purpose."""
from __future__ import annotations

import argparse
import asyncio
import os
import sys

from stack import health
from common.components import COMPONENTS, by_name


def resolve(target: str) -> tuple[str, str]:
    """TARGET → ("grpc", "host:port") or ("http", url)."""
    if target.startswith(("http://", "https://")):
        return "http", target
    if ":" in target:
        return "grpc", target
    c = by_name(target)  # KeyError for an unknown name: a typo must not pass as healthy
    port = os.environ.get(f"{c.env_prefix}PORT", str(c.port))
    if c.grpc:
        return "grpc", f"127.0.0.1:{port}"
    return "http", f"http://127.0.0.1:{port}/healthz"


def check(target: str, timeout: float) -> bool:
    kind, where = resolve(target)
    if kind == "http":
        return health.http_ok(where, timeout)
    return asyncio.run(health.grpc_serving(where, timeout))


def main(argv: list[str] | None = None) -> int:
    names = ", ".join(c.name for c in COMPONENTS)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("target", nargs="?", default=os.environ.get("VOICE_COMPONENT"),
                   help=f"host:port, http URL, or one of {names} (default: $VOICE_COMPONENT)")
    p.add_argument("--timeout", type=float, default=2.0, help="seconds (default: 2)")
    args = p.parse_args(argv)
    if not args.target:
        p.error("no target given and VOICE_COMPONENT is not set")
    try:
        ok = check(args.target, args.timeout)
    except KeyError:
        p.error(f"unknown component {args.target!r} (one of {names})")
    print("healthy" if ok else f"unhealthy: {args.target}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
