"""Invariant: the RAG engine rejects malformed searches with a message that
names the problem (empty query, query too long, k outside 1..20, min_score
outside [-1, 1]), applies the default k, returns the matching document first,
and Reindex picks up documents added after start and persists them."""
from __future__ import annotations

from pathlib import Path

import pytest

from services.rag.engine import RagConfig, RagEngine, query_words
from services.rag.fake import HashingEmbedder
from services.rag.schema import InvalidRequest, SearchRequest


def engine(tmp_path: Path, emb=None) -> RagEngine:
    docs = tmp_path / "docs"
    docs.mkdir(exist_ok=True)
    (docs / "guide.md").write_text(
        "# Interrupting\n\nSpeak while the assistant talks and it stops.\n\n"
        "# Privacy\n\nAudio never leaves the computer.\n\n# Voices\n\nJoe is the default voice.\n\n"
        "# Typing\n\nType a message and press Enter.\n")
    return RagEngine(emb or HashingEmbedder(), RagConfig(docs, tmp_path / "index", default_k=3,
                                                         max_query_chars=50))


@pytest.mark.parametrize("req, needle", [
    (SearchRequest(query=""), "query is empty"),
    (SearchRequest(query="   \n"), "query is empty"),
    (SearchRequest(query="x" * 51), "query is 51 characters; the limit is 50"),
    (SearchRequest(query="voices", k=-1), "k -1 is out of range 1..20"),
    (SearchRequest(query="voices", k=21), "k 21 is out of range 1..20"),
    (SearchRequest(query="voices", min_score=1.5), "min_score 1.5 is out of range"),
    (SearchRequest(query="voices", min_score=float("nan")), "min_score nan"),
])
def test_malformed_searches_are_rejected_precisely(tmp_path, req, needle):
    with pytest.raises(InvalidRequest) as err:
        engine(tmp_path).search(req)
    assert needle in str(err.value)


def test_default_k_and_best_match_first(tmp_path):
    eng = engine(tmp_path)
    hits = eng.search(SearchRequest(query="which voice is the default"))
    assert len(hits) == 3
    assert hits[0].chunk.title == "Voices" and hits[0].chunk.source == "guide.md"
    assert len(eng.search(SearchRequest(query="privacy", k=1))) == 1



class Recording(HashingEmbedder):
    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []

    def embed(self, texts):
        self.texts += list(texts)
        return super().embed(texts)


def test_a_query_is_searched_by_its_words_not_its_punctuation(tmp_path):
    """An interim ("... voice") and the final transcript ("... voice?") of one
    question find the same passages in the same order (the answer's prompt
    then matches the prefill's)."""
    emb = Recording()
    eng = engine(tmp_path, emb)
    plain = eng.search(SearchRequest(query="which voice is the default"))
    asked = eng.search(SearchRequest(query="Which voice is the default?"))
    assert [(h.chunk.title, h.score) for h in plain] == [(h.chunk.title, h.score) for h in asked]
    assert emb.texts[-1] == "Which voice is the default"
    assert query_words("Can't it e-mail me, please?!") == "Can't it e-mail me please"
    assert query_words("?") == "?"          # nothing but punctuation: as it is

def test_reindex_picks_up_new_documents_and_persists_them(tmp_path):
    eng = engine(tmp_path)
    (tmp_path / "docs" / "extra.txt").write_text("Gardening\n\nWater tomatoes every morning.\n")
    assert all(h.chunk.source != "extra.txt"
               for h in eng.search(SearchRequest(query="water tomatoes", k=20)))
    result = eng.reindex()
    assert result.documents == 2 and result.chunks == len(eng.index.chunks)
    assert eng.search(SearchRequest(query="water tomatoes morning"))[0].chunk.source == "extra.txt"
    emb = HashingEmbedder()
    again = engine(tmp_path, emb)   # a restart reloads what Reindex saved
    assert again.last_build.reloaded and emb.embedded == 0


def test_an_index_build_is_counted_with_the_chunks_it_embedded(tmp_path):
    """make capacity reads these to flag a step that paid for a rebuild."""
    from prometheus_client import REGISTRY

    from common import metrics

    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, {**metrics.base(), **labels}) or 0.0

    eng = engine(tmp_path)
    built, embedded = value("voice_rag_index_loads_total", how="built"), value("voice_rag_chunks_embedded_total")
    assert eng.refresh() is False
    assert value("voice_rag_index_loads_total", how="built") == built      # nothing changed, nothing built
    (tmp_path / "docs" / "extra.txt").write_text("Gardening\n\nWater tomatoes every morning.\n")
    assert eng.refresh() is True
    assert value("voice_rag_index_loads_total", how="built") == built + 1
    assert value("voice_rag_chunks_embedded_total") == embedded + eng.last_build.embedded > embedded
