"""The RAG engine: validation, query embedding and search over the current
index, and rebuilds. Synchronous and gRPC-free; the servicer calls it from a
worker thread.

The documents folder is watched while the service runs (``watch``: a thread
that compares every file's size and modification time every
``watch_interval_s``, a few stat calls, no dependency): a new, changed or
deleted document is picked up without a restart, re-embedding only what
changed; searches keep the old index until the new one is complete."""
from __future__ import annotations

import dataclasses
import logging
import re
import threading
import time
from pathlib import Path

from services.rag import metrics as rag_metrics
from services.rag.chunking import ChunkingConfig
from services.rag.embedder import Embedder
from services.rag.index import BuildStats, VectorIndex, load_or_build, scan
from services.rag.schema import Hit, InvalidRequest, ReindexResult, SearchRequest

log = logging.getLogger(__name__)

MAX_K = 20

WORD = re.compile(r"\w+(?:['\u2019-]\w+)*")


def query_words(query: str) -> str:
    """What is embedded of a query: its words, not its punctuation. The final
    transcript of a spoken question ends in "?" where its interims did not,
    and that alone reordered the passages found (bench doc_questions: "How do
    I run the tests" / "... tests?"), so the answer's prompt quoted them in
    another order than the prefill that had warmed the LLM for it. Measured
    over the answer eval's 39 in-document questions: recall@3 33 -> 34
    (docs/answers.md). A query of punctuation only is embedded as it is."""
    return " ".join(WORD.findall(query)) or query


@dataclasses.dataclass(frozen=True)
class RagConfig:
    docs_dir: Path
    index_dir: Path
    default_k: int = 3
    max_query_chars: int = 1000
    chunking: ChunkingConfig = ChunkingConfig()


class RagEngine:
    def __init__(self, embedder: Embedder, config: RagConfig) -> None:
        self.embedder = embedder
        self.config = config
        self._rebuild_lock = threading.Lock()
        self._seen = self._fingerprint()
        self.index, self.last_build = self._load(force=False)
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    # -- the documents folder ------------------------------------------------------
    def _fingerprint(self) -> dict[str, tuple[int, int]]:
        out: dict[str, tuple[int, int]] = {}
        for rel, path in scan(self.config.docs_dir, exclude=self.config.index_dir).items():
            try:
                st = path.stat()
            except OSError:
                continue          # deleted between the listing and the stat
            out[rel] = (st.st_size, st.st_mtime_ns)
        return out

    def refresh(self) -> bool:
        """Rebuild (incrementally) if a document was added, changed or
        deleted since the last look; True if it did."""
        seen = self._fingerprint()
        if seen == self._seen:
            return False
        with self._rebuild_lock:
            index, stats = self._load(force=False)
            self.index, self.last_build, self._seen = index, stats, seen
        return True

    def watch(self, interval_s: float) -> None:
        """Look for changed documents every ``interval_s`` on a daemon thread."""
        def run() -> None:
            while not self._stop.wait(interval_s):
                try:
                    self.refresh()
                except Exception:  # noqa: BLE001 - a bad moment (a file half written): next look
                    log.exception("documents folder: refresh failed; trying again in %.0f s", interval_s)

        self._watcher = threading.Thread(target=run, name="rag-watch", daemon=True)
        self._watcher.start()

    def close(self) -> None:
        self._stop.set()

    def _load(self, force: bool) -> tuple[VectorIndex, BuildStats]:
        index, stats = load_or_build(self.config.docs_dir, self.config.index_dir, self.embedder,
                                     self.config.chunking, force=force)
        log.info("index of %s: %d documents, %d chunks (%s, %d embedded) in %.2f s",
                 self.config.docs_dir, stats.documents, stats.chunks,
                 "reloaded from disk" if stats.reloaded else "built", stats.embedded, stats.seconds)
        rag_metrics.index_loaded(stats)
        return index, stats

    def validate(self, req: SearchRequest) -> tuple[str, int]:
        query = req.query.strip()
        if not query:
            raise InvalidRequest("query is empty")
        if len(query) > self.config.max_query_chars:
            raise InvalidRequest(f"query is {len(query)} characters; the limit is "
                                 f"{self.config.max_query_chars}")
        k = req.k or self.config.default_k
        if not 1 <= k <= MAX_K:
            raise InvalidRequest(f"k {req.k} is out of range 1..{MAX_K} "
                                 f"(0 = server default {self.config.default_k})")
        if not -1.0 <= req.min_score <= 1.0:  # NaN fails this too
            raise InvalidRequest(f"min_score {req.min_score} is out of range [-1, 1]")
        return query, k

    def search(self, req: SearchRequest) -> list[Hit]:
        """Best passages first; blocking (embeds the query)."""
        query, k = self.validate(req)
        index = self.index  # one consistent snapshot even if a rebuild swaps it
        vec = self.embedder.embed([query_words(query)])[0]
        return index.search(vec, k, req.min_score)

    def reindex(self) -> ReindexResult:
        """Rebuild from the documents folder, re-embedding everything, and persist.
        Concurrent calls run one after the other; searches keep using the old
        index until the new one is complete."""
        t0 = time.perf_counter()
        with self._rebuild_lock:
            seen = self._fingerprint()
            index, stats = self._load(force=True)
            self.index, self.last_build, self._seen = index, stats, seen
        return ReindexResult(documents=stats.documents, chunks=stats.chunks,
                             embedded=stats.embedded, duration_ms=(time.perf_counter() - t0) * 1000)
