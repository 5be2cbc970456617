"""`python -m eval.answers.compare A.json B.json ...`: the headline figures of
several eval runs side by side (one column per run, labelled by --label), as
a Markdown table for docs/answers.md."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

ROWS: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
    ("answers scored", lambda s: s["questions"]),
    ("recall@1 (source doc in top passage)", lambda s: s["recall_at"]["1"]),
    ("recall@3", lambda s: s["recall_at"]["3"]),
    ("recall@5", lambda s: s["recall_at"]["5"]),
    ("a source among the passages the answer saw", lambda s: s["source_in_used_passages"]),
    ("in docs: answer states all key facts", lambda s: s["all_key_facts"]),
    ("in docs: key facts stated", lambda s: s["key_fact_share"]),
    ("in docs: answer declines", lambda s: s["declined_in_documents"]),
    ("in docs: answer makes an unsupported specific claim", lambda s: s["unsupported_claims"]),
    ("in docs: content words in no passage (mean)", lambda s: s["novel_word_share_mean"]),
    ("outside docs: answer declines", lambda s: s["declined_outside"]),
    ("outside docs: answer makes an unsupported specific claim", lambda s: s["unsupported_claims_outside"]),
    ("time to first token p50 (ms)", lambda s: s["ttft_ms"]["p50"]),
    ("time to first token p95 (ms)", lambda s: s["ttft_ms"]["p95"]),
    ("whole answer p50 (ms)", lambda s: s["total_ms"]["p50"]),
    ("whole answer p95 (ms)", lambda s: s["total_ms"]["p95"]),
    ("prompt tokens (mean)", lambda s: s.get("prompt_tokens_mean")),
    ("answer tokens (mean)", lambda s: s.get("answer_tokens_mean")),
]
SHARES = {name for name, _ in ROWS if "ms" not in name and "tokens" not in name and name != "answers scored"}


def cell(name: str, v: Any) -> str:
    if v is None:
        return "-"
    if name in SHARES:
        return f"{v * 100:.0f} %"
    return f"{v:.0f}" if isinstance(v, float) else str(v)


def markdown(runs: list[dict[str, Any]]) -> str:
    heads = [r.get("label") or f"run {i + 1}" for i, r in enumerate(runs)]
    lines = ["| | " + " | ".join(heads) + " |", "|---|" + "---:|" * len(runs)]
    for name, get in ROWS:
        lines.append(f"| {name} | " + " | ".join(cell(name, get(r["summary"])) for r in runs) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="JSON files written by python -m eval.answers")
    args = p.parse_args(argv)
    print(markdown([json.loads(f.read_text()) for f in args.runs]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
