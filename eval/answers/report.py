"""The eval's figures from its per-question results: a summary (what
docs/answers.md records), a table per question, and the JSON written to
artifacts/. Pure functions over Result-like records."""
from __future__ import annotations

import statistics
from typing import Any, Sequence

from eval.answers.ask import RECALL_K, Result


def _share(flags: Sequence[bool]) -> float | None:
    return round(sum(flags) / len(flags), 3) if flags else None


def _pct(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))], 1)


def summary(results: Sequence[Result]) -> dict[str, Any]:
    """The headline figures. In-document questions: recall@k, key facts
    (all stated / share of facts), declined, unsupported claims. Outside the
    documents: declined, and unsupported claims (invented specifics)."""
    inside = [r for r in results if r.answerable]
    outside = [r for r in results if not r.answerable]
    answered = [r for r in inside if not r.unknown]
    ttft = [r.ttft_ms for r in results if r.ttft_ms is not None]
    total = [r.total_ms for r in results if r.total_ms is not None]
    return {
        "questions": len(results), "in_documents": len(inside), "outside_documents": len(outside),
        "recall_at": {str(k): _share([r.hit_rank is not None and r.hit_rank <= k for r in inside])
                      for k in RECALL_K},
        "source_in_used_passages": _share([r.used_source_hit for r in inside]),
        "all_key_facts": _share([all(r.facts) for r in inside]),
        "key_fact_share": _share([f for r in inside for f in r.facts]),
        "declined_in_documents": _share([r.unknown for r in inside]),
        "unsupported_claims": _share([bool(r.unsupported) for r in inside]),
        "novel_word_share_mean": round(statistics.fmean([r.novel_share for r in answered]), 3) if answered else None,
        "declined_outside": _share([r.unknown for r in outside]),
        "unsupported_claims_outside": _share([bool(r.unsupported) for r in outside]),
        "ttft_ms": {"p50": _pct(ttft, 0.5), "p95": _pct(ttft, 0.95), "max": max(ttft) if ttft else None},
        "total_ms": {"p50": _pct(total, 0.5), "p95": _pct(total, 0.95), "max": max(total) if total else None},
        "prompt_tokens_mean": round(statistics.fmean([r.prompt_tokens for r in results]), 1) if results else None,
        "answer_tokens_mean": round(statistics.fmean([r.answer_tokens for r in results]), 1) if results else None,
        "failed": sum(r.status != "completed" for r in results),
    }


def _cut(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def table(results: Sequence[Result]) -> str:
    rows = [f"{'id':<22} {'rank':>4} {'facts':>5} {'idk':>3} {'unsup':>5} {'ttft':>6} {'total':>6}  answer"]
    for r in results:
        facts = f"{sum(r.facts)}/{len(r.facts)}" if r.facts else "-"
        rank = str(r.hit_rank) if r.hit_rank else ("-" if r.answerable else "")
        ttft = f"{r.ttft_ms:.0f}" if r.ttft_ms is not None else "-"
        total = f"{r.total_ms:.0f}" if r.total_ms is not None else "-"
        rows.append(f"{r.id:<22} {rank:>4} {facts:>5} {'yes' if r.unknown else '':>3} "
                    f"{len(r.unsupported):>5} {ttft:>6} {total:>6}  {_cut(r.answer, 90)}")
        if r.unsupported:
            rows.append(f"{'':<22} unsupported: {', '.join(c for _, c in r.unsupported)[:110]}")
    return "\n".join(rows)


def summary_text(s: dict[str, Any]) -> str:
    def pc(v: float | None) -> str:
        return "-" if v is None else f"{v * 100:.0f} %"
    recall = ", ".join(f"@{k} {pc(v)}" for k, v in s["recall_at"].items())
    return "\n".join([
        f"{s['questions']} questions: {s['in_documents']} answered in docs/, {s['outside_documents']} outside",
        f"retrieval recall {recall}; a source among the passages the answer saw: {pc(s['source_in_used_passages'])}",
        f"in docs: all key facts {pc(s['all_key_facts'])}, key facts stated {pc(s['key_fact_share'])}, "
        f"declined {pc(s['declined_in_documents'])}, unsupported claims {pc(s['unsupported_claims'])}, "
        f"novel content words {pc(s['novel_word_share_mean'])} (mean, answers not declined)",
        f"outside docs: declined {pc(s['declined_outside'])}, "
        f"unsupported claims {pc(s['unsupported_claims_outside'])}",
        f"time to first token p50 {s['ttft_ms']['p50']} ms, p95 {s['ttft_ms']['p95']} ms; "
        f"whole answer p50 {s['total_ms']['p50']} ms, p95 {s['total_ms']['p95']} ms; failed {s['failed']}",
        f"prompt tokens (mean) {s['prompt_tokens_mean']}, answer tokens (mean) {s['answer_tokens_mean']}",
    ])
