"""Invariant: the index persists to disk and reloads at start without
re-embedding when the documents, the embedding model and the chunking are
unchanged; a changed, added or removed document triggers a rebuild that
re-embeds only what changed; a damaged index file is rebuilt; search
returns passages best first with cosine scores, honouring k and min_score."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from services.rag.fake import HashingEmbedder
from services.rag.index import META, VECTORS, VectorIndex, load_or_build, scan

DOCS = {
    "guide.md": "# Interrupting\n\nSpeak while the assistant talks and it stops talking at once.\n\n"
                "# Privacy\n\nEverything runs locally; audio never leaves the computer.\n",
    "runbooks/redis.md": "# Redis failures\n\nRestart redis-server and check the gateway logs.\n",
    "notes.txt": "Cooking\n\nBake bread in a hot oven for forty minutes.\n",
}


def write_docs(root: Path, docs: dict[str, str] = DOCS) -> Path:
    for rel, text in docs.items():
        p = root / "docs" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root / "docs"


def test_first_start_builds_and_persists(tmp_path):
    docs, idx = write_docs(tmp_path), tmp_path / "index"
    emb = HashingEmbedder()
    index, stats = load_or_build(docs, idx, emb)
    assert not stats.reloaded and stats.documents == 3
    assert stats.embedded == len(index.chunks) == emb.embedded > 0
    assert (idx / VECTORS).is_file() and (idx / META).is_file()


def test_unchanged_documents_reload_without_reembedding(tmp_path):
    docs, idx = write_docs(tmp_path), tmp_path / "index"
    first, _ = load_or_build(docs, idx, HashingEmbedder())
    emb = HashingEmbedder()  # a fresh process
    again, stats = load_or_build(docs, idx, emb)
    assert stats.reloaded and emb.embedded == 0
    assert again.chunks == first.chunks
    np.testing.assert_array_equal(again.vectors, first.vectors)


def test_a_changed_document_triggers_a_rebuild_of_only_that_document(tmp_path):
    docs, idx = write_docs(tmp_path), tmp_path / "index"
    first, _ = load_or_build(docs, idx, HashingEmbedder())
    (docs / "runbooks/redis.md").write_text("# Redis failures\n\nFlush the queue and page the on-call.\n")
    emb = HashingEmbedder()
    index, stats = load_or_build(docs, idx, emb)
    changed = [c for c in index.chunks if c.source == "runbooks/redis.md"]
    assert not stats.reloaded and emb.embedded == stats.embedded == len(changed)
    assert any("page the on-call" in c.text for c in changed)
    assert all("Restart redis-server" not in c.text for c in index.chunks)
    # The rebuilt index is what the next start reloads.
    _, stats2 = load_or_build(docs, idx, HashingEmbedder())
    assert stats2.reloaded


def test_added_and_removed_documents_are_picked_up(tmp_path):
    docs, idx = write_docs(tmp_path), tmp_path / "index"
    load_or_build(docs, idx, HashingEmbedder())
    (docs / "notes.txt").unlink()
    (docs / "faq.md").write_text("# Voices\n\nThe default voice is Joe, US English.\n")
    index, stats = load_or_build(docs, idx, HashingEmbedder())
    sources = {c.source for c in index.chunks}
    assert "faq.md" in sources and "notes.txt" not in sources
    assert set(index.documents) == {"guide.md", "runbooks/redis.md", "faq.md"}


def test_another_embedding_model_rebuilds_everything(tmp_path):
    docs, idx = write_docs(tmp_path), tmp_path / "index"
    first, _ = load_or_build(docs, idx, HashingEmbedder())
    emb = HashingEmbedder(model_id="another-model")
    _, stats = load_or_build(docs, idx, emb)
    assert not stats.reloaded and emb.embedded == len(first.chunks)


def test_a_damaged_vectors_file_is_rebuilt(tmp_path):
    docs, idx = write_docs(tmp_path), tmp_path / "index"
    load_or_build(docs, idx, HashingEmbedder())
    np.save(idx / VECTORS, np.zeros((1, 3), np.float32))
    assert VectorIndex.load(idx) is None
    _, stats = load_or_build(docs, idx, HashingEmbedder())
    assert not stats.reloaded


def test_the_index_folder_inside_the_docs_folder_is_not_indexed(tmp_path):
    docs = write_docs(tmp_path)
    (docs / ".hidden.md").write_text("# Secret\n\nnot indexed\n")
    inner = docs / "index"
    inner.mkdir()
    (inner / "stray.md").write_text("# Stray\n\nnot indexed either\n")
    assert set(scan(docs, exclude=inner)) == set(DOCS)



def test_what_the_folders_ragignore_names_is_not_indexed_and_a_change_to_it_is_seen(tmp_path):
    docs = write_docs(tmp_path, DOCS | {"drafts/plan.md": "# Plan\n\nnot yet\n",
                                        "log-2026.md": "# Log\n\nmeasurements\n"})
    (docs / ".ragignore").write_text("# measurement logs\n\nlog-*.md\ndrafts/\nrunbooks/*.md\n")
    assert set(scan(docs)) == {"guide.md", "notes.txt"}
    index, _ = load_or_build(docs, tmp_path / "index", HashingEmbedder())
    assert {c.source for c in index.chunks} == {"guide.md", "notes.txt"}
    # A pattern with no "/" names files (and folders) anywhere; with one, a path
    # from the folder; a folder pattern matches at any depth, never a file.
    (docs / ".ragignore").write_text("plan.md\nguide.md/x\nnotes.txt/\n/log-2026.md\n")
    assert set(scan(docs)) == set(DOCS)
    (docs / "runbooks" / "drafts").mkdir()
    (docs / "runbooks" / "drafts" / "new.md").write_text("# New\n\nnot yet\n")
    (docs / ".ragignore").write_text("drafts/\n")
    assert set(scan(docs)) == set(DOCS) | {"log-2026.md"}
    (docs / ".ragignore").write_text("runbooks\n")
    assert set(scan(docs)) == {"guide.md", "notes.txt", "drafts/plan.md", "log-2026.md"}
    (docs / "runbooks" / "drafts" / "new.md").unlink()
    (docs / "runbooks" / "drafts").rmdir()
    (docs / ".ragignore").unlink()
    assert set(scan(docs)) == set(DOCS) | {"drafts/plan.md", "log-2026.md"}

def test_search_is_best_first_with_cosine_scores_and_honours_k_and_min_score(tmp_path):
    emb = HashingEmbedder()
    index, _ = load_or_build(write_docs(tmp_path), tmp_path / "index", emb)
    q = emb.embed(["redis failures restart gateway logs"])[0]
    hits = index.search(q, k=10)
    assert len(hits) == len(index.chunks)                    # k larger than the index
    assert hits[0].chunk.source == "runbooks/redis.md"
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert all(-1.0 <= s <= 1.0001 for s in scores)
    np.testing.assert_allclose(scores[0], float(index.vectors[index.chunks.index(hits[0].chunk)] @ q), rtol=1e-6)
    assert len(index.search(q, k=2)) == 2
    assert all(h.score >= 0.3 for h in index.search(q, k=10, min_score=0.3))
    assert len(index.search(q, k=10, min_score=0.3)) < len(hits)


def test_an_empty_folder_gives_an_empty_index(tmp_path):
    (tmp_path / "docs").mkdir()
    index, stats = load_or_build(tmp_path / "docs", tmp_path / "index", HashingEmbedder())
    assert stats.chunks == 0 and index.search(np.ones(256, np.float32) / 16, k=3) == []
