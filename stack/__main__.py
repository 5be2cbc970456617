"""`python -m stack`: start the whole assistant (what `make run` runs)."""
from __future__ import annotations

import argparse
import asyncio
import logging

from stack.supervisor import Supervisor


def main() -> int:
    p = argparse.ArgumentParser(description="Run every service and the gateway as local processes.")
    p.add_argument("--prometheus", action="store_true",
                   help="also start Prometheus with the project's rules (default: off)")
    p.add_argument("--only", nargs="*", help="start only these components (default: all)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s   stack | %(message)s")
    return asyncio.run(Supervisor(prometheus=args.prometheus, only=args.only).run())


if __name__ == "__main__":
    raise SystemExit(main())
