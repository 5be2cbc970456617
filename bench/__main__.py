"""`python -m bench [name ...]`: run the benchmarks (all, or the named ones)."""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time

import bench


def main() -> int:
    names = sorted(m.name for m in pkgutil.iter_modules(bench.__path__) if m.name.startswith("bench_"))
    p = argparse.ArgumentParser(description="Run benchmarks; each prints its figures.")
    p.add_argument("only", nargs="*", help=f"subset of {', '.join(n[6:] for n in names)}")
    args = p.parse_args()
    selected = [n for n in names if not args.only or n[6:] in args.only]
    failed = []
    for name in selected:
        print(f"\n=== {name[6:]} ===", flush=True)
        t0 = time.perf_counter()
        try:
            importlib.import_module(f"bench.{name}").main()
        except Exception as exc:  # keep going: one broken bench shouldn't hide the others
            print(f"!! {name} failed: {exc!r}", flush=True)
            failed.append(name)
        print(f"--- {name[6:]} took {time.perf_counter() - t0:.1f} s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
