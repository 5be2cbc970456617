"""The RAG service's own metrics (names from docs/metrics.md)."""
from __future__ import annotations

from common import metrics
from services.rag.schema import Hit

SEARCH_SECONDS = metrics.histogram("voice_rag_search_seconds", "Search latency (embed + scan)")
HIT_SCORE = metrics.histogram("voice_rag_hit_score", "Cosine score of returned passages",
                              buckets=tuple(round(0.1 * i, 1) for i in range(11)))


def record(seconds: float, hits: list[Hit]) -> None:
    b = metrics.base()
    SEARCH_SECONDS.labels(**b).observe(seconds)
    for h in hits:
        HIT_SCORE.labels(**b).observe(h.score)
