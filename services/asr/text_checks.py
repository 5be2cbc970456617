"""Checks on Whisper's text, with no model: the pieces of its word timings
joined into words, and the two signs that a decode looped (Whisper's own
compression ratio, and a run of words said twice, which the ratio cannot see
on a short phrase: services/asr/engine.py says where each is used)."""
from __future__ import annotations

import re
import zlib
from typing import Callable

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


def first_reading(text: str) -> str | None:
    """The text's first sentence, when all the rest only says that sentence
    again (the last word may be cut: the decode stopped at its cap), else None.

    How a trimmed window's decode loops on the part of a sentence after a
    pause: it reads the speech, then reads it again until stopped ("Not an
    ill-disposed young man. Not an ill-disposed young man. Not an ill-d").
    Over bench_turn_model's 115 segments the first reading was the full
    window's text in 2 of the 3 loops and better in the third (the full
    window read "Not an old supposed young man?"), at a fraction of the
    full window's ~1 s (docs/benchmarks.md). A short text said again with no
    sentence end in between ("go back go back") is not taken: nothing says
    where one reading ends."""
    m = re.match(r"\s*(.+?[.?!])(\s+|$)", text)
    if m is None:
        return None
    first = m.group(1).strip()
    unit, rest = _words(first), _words(text[m.end():])
    if not unit or len(rest) < 2:
        return None
    again = (unit * (len(rest) // len(unit) + 1))[:len(rest)]
    return first if rest[:-1] == again[:-1] and again[-1].startswith(rest[-1]) else None


def prefix_ids(decode: Callable[[list[int]], str], ids: list[int], text: str) -> list[int] | None:
    """The shortest prefix of the token ``ids`` that decodes to ``text`` (None if none does)."""
    for k in range(1, len(ids) + 1):
        if decode(ids[:k]).strip() == text:
            return ids[:k]
    return None


def _words(text: str) -> list[str]:
    return re.sub(r"[^\w' ]", " ", text.lower()).split()


def looks_looped(text: str) -> bool:
    """Either sign that a decode read its audio twice: the text compresses too
    well, or a run of words is said twice back to back."""
    return compression_ratio(text) > COMPRESSION_RATIO_MAX or says_twice(text)
