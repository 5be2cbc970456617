"""`python -m services.rag`: the Retriever (RAG) gRPC service.

Settings come from flags, then RAG_* environment variables, then defaults."""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from common import server
from common.config import ServiceSettings, load_settings, setting
from common.cores import host_cores
from common.status import StreamStats
from common.stubs import rag_pb2_grpc
from services.rag.chunking import ChunkingConfig
from services.rag.embedder import (
    MiniLmEmbedder, OnnxOptions, default_model_path, default_tokenizer_path,
)
from services.rag.engine import MAX_K, RagConfig, RagEngine
from services.rag.servicer import RetrieverServicer
from common.components import by_name

ROOT = Path(__file__).resolve().parent.parent.parent

COMPONENT = by_name("rag")
log = logging.getLogger("rag")

# One query is a few dozen tokens: beyond a few intra-op threads it only adds wake-ups
# (not measured past 2 cores; a reindex is the only big batch and is rare).
MAX_AUTO_THREADS = 4


@dataclasses.dataclass
class Settings(ServiceSettings):
    port: int = setting(COMPONENT.port, "gRPC port")
    metrics_port: int = setting(COMPONENT.metrics_port, "Prometheus /metrics port (0 = off)")
    threads: int = setting(0, f"onnxruntime intra-op threads of the embedder (0 = from the host's "
                           f"cores, at most {MAX_AUTO_THREADS})")
    docs_dir: str = setting(str(ROOT / "docs"), "documents folder (.md, .txt, .pdf, .html, .docx; searched "
                            "recursively)")
    watch_interval_s: float = setting(2.0, "how often the documents folder is checked for new, changed or "
                                      "deleted files (0 = only at start and on Reindex)")
    index_dir: str = setting(str(ROOT / "var" / "rag"), "where the index is persisted")
    model: str = setting(default_model_path(), "embedding ONNX model (all-MiniLM-L6-v2 int8)")
    tokenizer: str = setting(default_tokenizer_path(), "tokenizer.json of the embedding model")
    default_k: int = setting(3, f"passages returned when a request says k=0 (at most {MAX_K})")
    max_query_chars: int = setting(1000, "longest query accepted")
    chunk_min_words: int = setting(60, "shorter section tails merge into the previous chunk")
    chunk_target_words: int = setting(120, "a chunk closes once it reaches this many words")
    chunk_max_words: int = setting(200, "a chunk never grows past this many words")


def resolve_threads(setting_value: int, cores: int) -> int:
    return setting_value or max(1, min(cores, MAX_AUTO_THREADS))


def build_engine(s: Settings) -> RagEngine:
    cores = host_cores()
    threads = resolve_threads(s.threads, cores)
    log.info("embedder threads: %d (setting %d, %d cores; 0 = from the host)", threads, s.threads, cores)
    embedder = MiniLmEmbedder(OnnxOptions(model_path=s.model, tokenizer_path=s.tokenizer,
                                          threads=threads, device=s.device))
    cfg = RagConfig(docs_dir=Path(s.docs_dir), index_dir=Path(s.index_dir), default_k=s.default_k,
                    max_query_chars=s.max_query_chars,
                    chunking=ChunkingConfig(s.chunk_min_words, s.chunk_target_words, s.chunk_max_words))
    engine = RagEngine(embedder, cfg)
    if s.watch_interval_s > 0:
        engine.watch(s.watch_interval_s)
    return engine


async def main() -> None:
    s = load_settings(Settings, "RAG_", description=__doc__)
    label = Path(s.model).parent.name or "none"
    stats = StreamStats(service="rag", model=label)

    def add(srv, engine) -> None:
        rag_pb2_grpc.add_RetrieverServicer_to_server(RetrieverServicer(engine, stats), srv)

    await server.serve("rag", ["voice.v1.Retriever"], s, label, lambda: build_engine(s), add)


if __name__ == "__main__":
    server.run(main)
