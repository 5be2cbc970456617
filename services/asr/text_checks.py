"""Checks on Whisper's text, with no model: the pieces of its word timings
joined into words, and the two signs that a decode looped (Whisper's own
compression ratio, and a run of words said twice, which the ratio cannot see
on a short phrase: services/asr/engine.py says where each is used)."""
from __future__ import annotations

import re
import zlib

from services.asr.results import Word

COMPRESSION_RATIO_MAX = 2.4   # faster-whisper's compression_ratio_threshold


def join_pieces(raw: list[Word]) -> tuple[Word, ...]:
    """Whisper's words keep their leading space; a piece without one that starts
    with punctuation ("-disposed") continues the previous word ("ill"), so there is
    one Word per word of the text. (Languages written without spaces come one
    character per piece and are left alone.)"""
    out: list[Word] = []
    for w in raw:
        first = w.word[:1]
        if out and first not in (" ", "") and not first.isalnum():
            prev = out[-1]
            out[-1] = Word(prev.word + w.word.strip(), prev.start_ms, w.end_ms,
                           min(prev.probability, w.probability))
        else:
            out.append(Word(w.word.strip(), w.start_ms, w.end_ms, w.probability))
    return tuple(w for w in out if w.word)


def compression_ratio(text: str) -> float:
    """Whisper's own hallucination test: looping text compresses too well."""
    data = text.encode()
    return len(data) / len(zlib.compress(data)) if data else 0.0


def says_twice(text: str) -> bool:
    """A run of two or more words said twice back to back ("have been have been"),
    case and punctuation aside: how a trimmed window's decode loops on a short
    phrase, where the compression ratio is blind."""
    words = re.sub(r"[^\w' ]", " ", text.lower()).split()
    return any(words[i:i + n] == words[i + n:i + 2 * n]
               for n in range(2, len(words) // 2 + 1) for i in range(len(words) - 2 * n + 1))


def looks_looped(text: str) -> bool:
    """Either sign that a decode read its audio twice: the text compresses too
    well, or a run of words is said twice back to back."""
    return compression_ratio(text) > COMPRESSION_RATIO_MAX or says_twice(text)
