"""The load test's clips are things said to the assistant, not questions about
its documents: over the project's own docs/ (its .ragignore applied), none of
them retrieves a passage above the gateway's score floor. A document that
quotes a clip (the measurement logs do, and docs/.ragignore leaves them out)
gives every turn of that clip a grounded prompt of ~200 more tokens and
changes what `make capacity` measures (docs/capacity-rechecks.md, re-check 26)."""
from __future__ import annotations

from pathlib import Path

import dataclasses

from clients.clips import clips
from services.gateway.settings import GatewaySettings
from services.rag.__main__ import Settings as RagSettings, build_engine
from services.rag.schema import SearchRequest
from tests.procs import ROOT


def test_no_load_test_clip_retrieves_a_passage_of_the_projects_documents(tmp_path: Path):
    # The service's own engine, over the project's docs/, with an index of the test's.
    engine = build_engine(dataclasses.replace(RagSettings(), docs_dir=str(ROOT / "docs"),
                                              index_dir=str(tmp_path / "index"), watch_interval_s=0))
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
