"""The vector index and its on-disk form.

On disk (``index_dir``): ``vectors.npy`` (float32, one unit row per chunk) and
``meta.json`` (format version, embedding model id, chunking settings, the
sha256 of every document, and the chunks). At start the index is reloaded
when all of those still match the documents folder; otherwise it is rebuilt,
re-embedding only the documents whose hash changed."""
from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Optional

import numpy as np

from services.rag import documents
from services.rag.chunking import ChunkingConfig, chunk_document
from services.rag.embedder import Embedder
from services.rag.schema import Chunk, Hit

log = logging.getLogger(__name__)

FORMAT_VERSION = 2   # bump when chunking or the file layout changes: old indexes rebuild
SUFFIXES = documents.SUFFIXES
VECTORS, META = "vectors.npy", "meta.json"


IGNORE_FILE = ".ragignore"


def ignore_patterns(docs_dir: Path) -> list[str]:
    """The folder's ``.ragignore``: one pattern a line, ``#`` comments. A pattern
    with no ``/`` names files or folders at any depth (``notes-*.txt``); one with
    a ``/`` is a path from the folder (``archive/*.pdf``; a leading ``/`` is
    allowed); one ending in ``/`` names folders only (``drafts/``). ``*`` and ``?``
    match across ``/`` in a path pattern, as ``fnmatch`` does."""
    try:
        text = (docs_dir / IGNORE_FILE).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def ignored(rel: str, patterns: list[str]) -> bool:
    parts = rel.split("/")
    for pat in patterns:
        folder_only = pat.endswith("/")
        pat = pat.strip("/")
        if not pat:
            continue
        # Every folder above the file, and (unless folder_only) the file itself.
        for depth in range(1, len(parts) + (0 if folder_only else 1)):
            here = parts[depth - 1] if "/" not in pat else "/".join(parts[:depth])
            if fnmatch.fnmatchcase(here, pat):
                return True
    return False


def scan(docs_dir: Path, exclude: Optional[Path] = None) -> dict[str, Path]:
    """Relative path -> file for every readable document, sorted; hidden files
    and what the folder's ``.ragignore`` names are skipped."""
    out: dict[str, Path] = {}
    if not docs_dir.is_dir():
        return out
    excl = exclude.resolve() if exclude else None
    patterns = ignore_patterns(docs_dir)
    for p in sorted(docs_dir.rglob("*")):
        rel = p.relative_to(docs_dir)
        if any(part.startswith(".") for part in rel.parts) or not p.is_file():
            continue
        if excl is not None and (p.resolve() == excl or excl in p.resolve().parents):
            continue
        if p.suffix.lower() in SUFFIXES and not ignored(rel.as_posix(), patterns):
            out[rel.as_posix()] = p
    return out


def file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclasses.dataclass(frozen=True)
class VectorIndex:
    """Immutable: a rebuild makes a new one and swaps the reference, so a
    search in flight keeps a consistent view without locks."""
    chunks: tuple[Chunk, ...]
    vectors: np.ndarray             # (n, dim) float32, unit rows
    documents: dict[str, str]       # relative path -> sha256
    model_id: str
    chunking: ChunkingConfig

    def search(self, query_vec: np.ndarray, k: int, min_score: float = 0.0) -> list[Hit]:
        if not self.chunks:
            return []
        scores = self.vectors @ query_vec.astype(np.float32)
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        hits = [Hit(self.chunks[i], float(scores[i])) for i in top]
        if min_score:
            hits = [h for h in hits if h.score >= min_score]
        return hits

    def matches(self, documents: dict[str, str], model_id: str, chunking: ChunkingConfig) -> bool:
        return (self.documents == documents and self.model_id == model_id
                and self.chunking == chunking)

    # -- persistence ---------------------------------------------------------------
    def save(self, index_dir: Path) -> None:
        index_dir.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": FORMAT_VERSION, "model": self.model_id,
            "chunking": dataclasses.asdict(self.chunking), "documents": self.documents,
            "chunks": [dataclasses.asdict(c) for c in self.chunks],
        }
        # Vectors first, meta last, each via rename: a crash leaves either the
        # old pair or a meta whose row count check fails on load (-> rebuild).
        tmp_v = index_dir / (VECTORS + ".tmp.npy")
        np.save(tmp_v, self.vectors.astype(np.float32))
        os.replace(tmp_v, index_dir / VECTORS)
        tmp_m = index_dir / (META + ".tmp")
        tmp_m.write_text(json.dumps(meta, indent=1))
        os.replace(tmp_m, index_dir / META)

    @classmethod
    def load(cls, index_dir: Path) -> Optional["VectorIndex"]:
        try:
            meta = json.loads((index_dir / META).read_text())
            vectors = np.load(index_dir / VECTORS)
        except (OSError, ValueError) as exc:
            if (index_dir / META).exists():
                log.warning("index in %s unreadable (%s): rebuilding", index_dir, exc)
            return None
        if meta.get("format") != FORMAT_VERSION:
            return None
        chunks = tuple(Chunk(**c) for c in meta["chunks"])
        if vectors.ndim != 2 or vectors.shape[0] != len(chunks):
            log.warning("index in %s has %s vectors for %d chunks: rebuilding",
                        index_dir, vectors.shape, len(chunks))
            return None
        return cls(chunks, vectors.astype(np.float32), dict(meta["documents"]), meta["model"],
                   ChunkingConfig(**meta["chunking"]))


@dataclasses.dataclass(frozen=True)
class BuildStats:
    documents: int
    chunks: int
    embedded: int
    seconds: float
    reloaded: bool


def build(docs: dict[str, Path], hashes: dict[str, str], embedder: Embedder,
          chunking: ChunkingConfig, previous: Optional[VectorIndex] = None) -> tuple[VectorIndex, int]:
    """A fresh index over ``docs``; documents whose hash and settings are
    unchanged since ``previous`` keep their chunks and vectors (not re-embedded).
    Returns the index and how many chunks were embedded."""
    reuse: dict[str, tuple[list[Chunk], np.ndarray]] = {}
    if previous is not None and previous.model_id == embedder.model_id \
            and previous.chunking == chunking:
        rows: dict[str, list[int]] = {}
        for i, c in enumerate(previous.chunks):
            rows.setdefault(c.source, []).append(i)
        for src, idx in rows.items():
            if src in hashes and previous.documents.get(src) == hashes[src]:
                reuse[src] = ([previous.chunks[i] for i in idx], previous.vectors[idx])
    chunks: list[Chunk] = []
    parts: list[np.ndarray] = []
    fresh: list[Chunk] = []
    for rel, path in docs.items():
        if rel in reuse:
            old_chunks, old_vecs = reuse[rel]
            chunks.extend(old_chunks)
            parts.append(old_vecs)
            continue
        try:
            pages = documents.read(path)
        except (documents.Unreadable, OSError) as exc:
            # Kept in ``documents`` (its hash) so it is not retried until it changes.
            log.warning("document %s could not be read (%s): not indexed; the rest of the folder is", rel, exc)
            continue
        doc_chunks: list[Chunk] = []
        for part in pages:
            doc_chunks += chunk_document(part.text, rel, chunking, markdown=part.markdown, page=part.page,
                                         first_index=len(doc_chunks))
        if not doc_chunks:
            continue
        vecs = embedder.embed([c.embedding_text() for c in doc_chunks])
        chunks.extend(doc_chunks)
        parts.append(vecs.reshape(len(doc_chunks), embedder.dim))
        fresh.extend(doc_chunks)
    vectors = np.concatenate(parts, axis=0) if parts else np.zeros((0, embedder.dim), np.float32)
    index = VectorIndex(tuple(chunks), vectors.astype(np.float32), dict(hashes),
                        embedder.model_id, chunking)
    return index, len(fresh)


def load_or_build(docs_dir: Path, index_dir: Path, embedder: Embedder,
                  chunking: ChunkingConfig = ChunkingConfig(),
                  force: bool = False) -> tuple[VectorIndex, BuildStats]:
    """The index for ``docs_dir``: the persisted one if still current, else rebuilt and saved."""
    t0 = time.perf_counter()
    if not docs_dir.is_dir():
        log.warning("documents folder %s does not exist: the index is empty", docs_dir)
    docs = scan(docs_dir, exclude=index_dir)
    hashes = {rel: file_hash(p) for rel, p in docs.items()}
    previous = VectorIndex.load(index_dir)
    if previous is not None and not force and previous.matches(hashes, embedder.model_id, chunking):
        return previous, BuildStats(len(docs), len(previous.chunks), 0,
                                    time.perf_counter() - t0, reloaded=True)
    index, embedded = build(docs, hashes, embedder, chunking, None if force else previous)
    index.save(index_dir)
    return index, BuildStats(len(docs), len(index.chunks), embedded,
                             time.perf_counter() - t0, reloaded=False)
