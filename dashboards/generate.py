"""Write the Grafana dashboards as JSON (fixed uids) next to this file.

    python -m dashboards.generate [--out DIR]     (also `make dashboards`)

The JSON is committed so Grafana can provision it without Python;
tests/unit/test_obs_dashboards.py fails when it is stale."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from dashboards.boards import boards

OUT = Path(__file__).resolve().parent


def render(board: dict[str, Any]) -> str:
    return json.dumps(board, indent=2, sort_keys=False) + "\n"


def write(out: Path = OUT) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for stem, board in boards().items():
        path = out / f"{stem}.json"
        path.write_text(render(board))
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=OUT, help=f"output directory (default: {OUT})")
    for path in write(p.parse_args(argv).out):
        print(path)


if __name__ == "__main__":
    main()
