"""The RAG service's own metrics (names from docs/metrics.md)."""
from __future__ import annotations

from common import metrics
from services.rag.index import BuildStats
from services.rag.schema import Hit

SEARCH_SECONDS = metrics.histogram("voice_rag_search_seconds", "Search latency (embed + scan)")
HIT_SCORE = metrics.histogram("voice_rag_hit_score", "Cosine score of returned passages",
                              buckets=tuple(round(0.1 * i, 1) for i in range(11)))

# A rebuild embeds the changed documents on the service's CPU: during a load
# test or a capacity step it is not the conversations' cost (loadtests/capacity.py
# says so when it sees one).
INDEX_LOADS = metrics.counter("voice_rag_index_loads_total",
                              "Index loads: at start and after a document changed (how=reloaded|built)",
                              ("how",))
CHUNKS_EMBEDDED = metrics.counter("voice_rag_chunks_embedded_total",
                                  "Document chunks embedded by index builds (the changed documents only)")


def index_loaded(stats: BuildStats) -> None:
    b = metrics.base()
    INDEX_LOADS.labels(**b, how="reloaded" if stats.reloaded else "built").inc()
    CHUNKS_EMBEDDED.labels(**b).inc(stats.embedded)


def record(seconds: float, hits: list[Hit]) -> None:
    b = metrics.base()
    SEARCH_SECONDS.labels(**b).observe(seconds)
    for h in hits:
        HIT_SCORE.labels(**b).observe(h.score)
