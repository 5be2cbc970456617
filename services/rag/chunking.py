"""Splitting documents into passages: by heading, then by paragraph, packed
into chunks of roughly ``min_words``..``max_words`` words. Each chunk keeps
the nearest heading as its title so a hit can say where it came from, and a
chunk never spans two sections (a passage about one topic, under its own name)."""
from __future__ import annotations

import dataclasses
import re
from pathlib import PurePosixPath
from typing import Iterable

from services.rag.schema import Chunk

HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")
LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
EMPHASIS = re.compile(r"(\*\*|__|`)")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
BLOCK_START = re.compile(r"^\s*([-*+]\s|\d+[.)]\s|\|)")


@dataclasses.dataclass(frozen=True)
class ChunkingConfig:
    min_words: int = 60      # shorter tails merge into the previous chunk of the section
    target_words: int = 120  # a chunk is closed once it reaches this size
    max_words: int = 200     # and never grows past this (long paragraphs split by sentence)


def plain(text: str) -> str:
    """Markdown to speakable plain text: links keep their label, no emphasis marks."""
    return EMPHASIS.sub("", LINK.sub(r"\1", text)).strip()


def unwrap(lines: list[str]) -> str:
    """Join hard-wrapped lines into one line per paragraph, list item or table
    row: passages are read by a model and spoken, not laid out."""
    out: list[str] = []
    for line in lines:
        if out and not in_code(line) and not BLOCK_START.match(line):
            out[-1] = f"{out[-1]} {line.strip()}"
        else:
            out.append(line.strip())
    return "\n".join(out)


def in_code(line: str) -> bool:
    return line.startswith("    ") and not line.strip().startswith(("-", "*", "+"))


def _words(text: str) -> int:
    return len(text.split())


def sections(text: str, default_title: str, markdown: bool) -> list[tuple[str, list[str]]]:
    """(title, paragraphs) for each section of a document, in order."""
    out: list[tuple[str, list[str]]] = [(default_title, [])]
    para: list[str] = []
    in_fence = False

    def end_paragraph() -> None:
        if para:
            p = plain(unwrap(para)) if markdown else unwrap(para).strip()
            if p:
                out[-1][1].append(p)
            para.clear()

    code: list[str] = []
    for line in text.splitlines():
        if markdown and FENCE.match(line):
            # Code is kept line by line as its own paragraph; the fence markers go.
            end_paragraph()
            if in_fence and code:
                out[-1][1].append("\n".join(code).strip("\n"))
            code.clear()
            in_fence = not in_fence
            continue
        if in_fence:
            code.append(line.rstrip())
            continue
        m = HEADING.match(line) if markdown else None
        if m:
            end_paragraph()
            out.append((plain(m.group(2)), []))
        elif not line.strip():
            end_paragraph()
        else:
            para.append(line.rstrip())
    if code:  # an unclosed fence still counts as text
        out[-1][1].append("\n".join(code).strip("\n"))
    end_paragraph()
    return [(t, ps) for t, ps in out if ps]


def _split_long(paragraph: str, max_words: int) -> list[str]:
    if _words(paragraph) <= max_words:
        return [paragraph]
    pieces: list[str] = []
    cur: list[str] = []
    for sentence in SENTENCE_END.split(paragraph):
        for start in range(0, max(_words(sentence), 1), max_words):  # a run-on "sentence"
            part = " ".join(sentence.split()[start:start + max_words])
            if cur and _words(" ".join(cur + [part])) > max_words:
                pieces.append(" ".join(cur))
                cur = []
            cur.append(part)
    if cur:
        pieces.append(" ".join(cur))
    return pieces


def pack(paragraphs: Iterable[str], cfg: ChunkingConfig) -> list[str]:
    """Greedy packing of one section's paragraphs into chunk texts."""
    chunks: list[list[str]] = []
    cur: list[str] = []
    n = 0
    for para in paragraphs:
        for piece in _split_long(para, cfg.max_words):
            w = _words(piece)
            if cur and n + w > cfg.max_words:
                chunks.append(cur)
                cur, n = [], 0
            cur.append(piece)
            n += w
            if n >= cfg.target_words:
                chunks.append(cur)
                cur, n = [], 0
    if cur:
        if chunks and n < cfg.min_words and _words(" ".join(chunks[-1])) + n <= cfg.max_words:
            chunks[-1].extend(cur)
        else:
            chunks.append(cur)
    return ["\n\n".join(c) for c in chunks]


def chunk_document(text: str, source: str, cfg: ChunkingConfig = ChunkingConfig(),
                   markdown: bool | None = None, page: int = 0, first_index: int = 0) -> list[Chunk]:
    """Chunks of one document (or of one page of it: ``page``, numbered on
    from ``first_index``); ``source`` is its path relative to the docs folder.
    ``markdown``: headings are "#" lines (default: by the file's suffix)."""
    path = PurePosixPath(source)
    if markdown is None:
        markdown = path.suffix.lower() in (".md", ".markdown")
    default_title = path.stem.replace("-", " ").replace("_", " ")
    if not markdown:
        first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
        if first and _words(first) <= 12 and not first.endswith("."):
            default_title = first  # a plain-text file's first short line is its title
    out: list[Chunk] = []
    for title, paras in sections(text, default_title, markdown):
        for body in pack(paras, cfg):
            out.append(Chunk(source=source, title=title, text=body, chunk_index=first_index + len(out),
                             page=page))
    return out
