"""Protobuf <-> engine types for the RAG service: the only module besides
the servicer and __main__ that touches rag_pb2."""
from __future__ import annotations

from common.stubs import common_pb2, rag_pb2
from services.rag.schema import Hit, ReindexResult, SearchRequest


def search_from_pb(req: rag_pb2.SearchRequest) -> SearchRequest:
    return SearchRequest(query=req.query, k=req.k, min_score=req.min_score)


def hits_to_pb(hits: list[Hit], latency_ms: float) -> rag_pb2.SearchResponse:
    return rag_pb2.SearchResponse(latency_ms=latency_ms, passages=[
        common_pb2.Passage(source=h.chunk.cited(), title=h.chunk.title, text=h.chunk.text,
                           score=h.score, chunk_index=h.chunk.chunk_index) for h in hits])


def reindex_to_pb(r: ReindexResult) -> rag_pb2.ReindexResponse:
    return rag_pb2.ReindexResponse(documents=r.documents, chunks=r.chunks, duration_ms=r.duration_ms)
