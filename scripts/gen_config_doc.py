#!/usr/bin/env python3
"""Write docs/configuration.md from the settings dataclasses (deploy/configdoc.py).

    python scripts/gen_config_doc.py           # rewrite the doc
    python scripts/gen_config_doc.py --check   # exit 1 when the doc is stale"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT, ROOT / "gen"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from deploy.configdoc import render  # noqa: E402

DOC = ROOT / "docs" / "configuration.md"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="compare instead of writing (default: write)")
    args = p.parse_args(argv)
    text = render()
    if args.check:
        if not DOC.exists() or DOC.read_text() != text:
            print(f"{DOC} is stale: run python scripts/gen_config_doc.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(text)
    print(DOC)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
