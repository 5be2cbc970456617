"""The load test's clips are things said to the assistant, not questions about
its documents: over the project's own docs/ (its .ragignore applied), none of
them retrieves a passage above the gateway's score floor. A document that
quotes a clip (the measurement logs do, and docs/.ragignore leaves them out)
gives every turn of that clip a grounded prompt of ~200 more tokens and
changes what `make capacity` measures (docs/capacity-rechecks.md, re-check 26)."""
from __future__ import annotations

from pathlib import Path

from clients.clips import clips
from services.gateway.settings import GatewaySettings
from services.rag.chunking import ChunkingConfig
from services.rag.embedder import MiniLmEmbedder, OnnxOptions
from services.rag.engine import RagConfig, RagEngine
from services.rag.__main__ import Settings as RagSettings
from services.rag.schema import SearchRequest
from tests.procs import ROOT


def test_no_load_test_clip_retrieves_a_passage_of_the_projects_documents(tmp_path: Path):
    s = RagSettings()
    embedder = MiniLmEmbedder(OnnxOptions(model_path=s.model, tokenizer_path=s.tokenizer, threads=2))
    engine = RagEngine(embedder, RagConfig(
        docs_dir=ROOT / "docs", index_dir=tmp_path / "index", default_k=3,
        max_query_chars=s.max_query_chars,
        chunking=ChunkingConfig(s.chunk_min_words, s.chunk_target_words, s.chunk_max_words)))
    try:
        indexed = {c.source for c in engine.index.chunks}
        assert "user-guide.md" in indexed and "benchmarks.md" not in indexed
        floor = GatewaySettings().rag_min_score
        found = {}
        for _, text in clips():
            hits = engine.search(SearchRequest(query=text, k=3, min_score=floor))
            if hits:
                found[text] = [(h.chunk.source, round(h.score, 3)) for h in hits]
        assert not found, f"load-test clips that retrieve passages above {floor}: {found}"
    finally:
        engine.close()
