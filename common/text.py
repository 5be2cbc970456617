"""Clause splitting for speech: cut streaming text where a listener would
pause, so synthesis can start on the first clause while the rest generates."""
from __future__ import annotations

import re

# Strong boundaries always cut; weak ones (comma-like) cut once the clause is
# long enough to be worth a TTS call, so "Yes, I can." isn't chopped to "Yes,".
_STRONG = re.compile(r"[.!?;:\n]+[\"')\]]*(?=\s)")
_WEAK = re.compile(r"[,\u2014\u2013]+(?=\s)")
MIN_WEAK_CLAUSE_WORDS = 4


def split_clauses(text: str) -> list[str]:
    """Split a whole text into clauses (used by TTS on complete requests)."""
    splitter = ClauseSplitter()
    out = splitter.push(text)
    tail = splitter.flush()
    return [c for c in out + ([tail] if tail else []) if c.strip()]


class ClauseSplitter:
    """Incremental splitter: push token deltas, get complete clauses back."""

    def __init__(self, min_weak_words: int = MIN_WEAK_CLAUSE_WORDS) -> None:
        self._buf = ""
        self._min_weak_words = min_weak_words

    def push(self, delta: str) -> list[str]:
        self._buf += delta
        out: list[str] = []
        while True:
            cut = self._find_cut()
            if cut is None:
                break
            clause, self._buf = self._buf[:cut].strip(), self._buf[cut:].lstrip()
            if clause:
                out.append(clause)
        return out

    def _find_cut(self) -> int | None:
        m = _STRONG.search(self._buf)
        # A boundary needs the following whitespace to be seen, so "3.5" or
        # "e.g" mid-stream are not cut before the next token arrives.
        strong = m.end() if m else None
        for w in _WEAK.finditer(self._buf):
            if strong is not None and w.start() > strong:
                break
            if len(self._buf[: w.end()].split()) >= self._min_weak_words:
                return w.end()
        return strong

    def flush(self) -> str:
        rest, self._buf = self._buf.strip(), ""
        return rest
