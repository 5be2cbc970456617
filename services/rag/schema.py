"""The RAG engine's own types; convert.py maps them to and from protobuf."""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Chunk:
    """A passage of one document: what is embedded, stored and returned."""
    source: str        # path relative to the documents folder, with "/" separators
    title: str         # nearest heading above the passage
    text: str
    chunk_index: int   # position of the chunk within its document
    page: int = 0      # 1-based page of a PDF; 0 = not paged

    def cited(self) -> str:
        """The source as a client sees it: a PDF passage names its page
        ("manual.pdf#page=3", the fragment PDF viewers open at)."""
        return f"{self.source}#page={self.page}" if self.page else self.source

    def embedding_text(self) -> str:
        # The heading carries the topic that paragraphs often leave implicit
        # ("Press the button..." under "Push-to-talk"), so it is embedded too.
        return f"{self.title}\n{self.text}" if self.title else self.text


@dataclasses.dataclass(frozen=True)
class Hit:
    chunk: Chunk
    score: float       # cosine similarity to the query


@dataclasses.dataclass(frozen=True)
class SearchRequest:
    query: str
    k: int = 0             # 0 = server default
    min_score: float = 0.0  # 0 = keep all


@dataclasses.dataclass(frozen=True)
class ReindexResult:
    documents: int
    chunks: int
    embedded: int          # chunks actually (re-)embedded; the rest were reused
    duration_ms: float


class InvalidRequest(ValueError):
    """The request is malformed; the message says exactly what is wrong."""
