"""The reply's clause splitter with a faster first clause.

Voice-to-voice ends at the first audio, and that waits for the LLM to finish
the first clause and for TTS to synthesise all of it (Piper speaks a clause
at a time). So only the first clause is cut early: at a weak boundary (comma,
dash) once it has ``first_weak_words`` words, or, when no punctuation came
yet, after ``first_max_words`` complete words. Later clauses keep the usual
rules (common.text.ClauseSplitter), so the rest of the reply keeps its
prosody."""
from __future__ import annotations

import re

from common.text import ClauseSplitter

_COMPLETE_WORD = re.compile(r"\S+(?=\s)")   # a word is complete once the next whitespace came


class FastFirstClauseSplitter(ClauseSplitter):
    def __init__(self, first_weak_words: int = 2, first_max_words: int = 6) -> None:
        super().__init__()
        self._first = first_max_words > 0 or first_weak_words > 0
        self._first_weak_words, self._first_max_words = first_weak_words, first_max_words

    def _find_cut(self) -> int | None:
        if not self._first:
            return super()._find_cut()
        usual = self._min_weak_words
        if self._first_weak_words > 0:
            self._min_weak_words = self._first_weak_words
        try:
            cut = super()._find_cut()
        finally:
            self._min_weak_words = usual
        if self._first_max_words > 0:
            words = [m.end() for m in _COMPLETE_WORD.finditer(self._buf)]
            if len(words) >= self._first_max_words:
                by_count = words[self._first_max_words - 1]
                cut = by_count if cut is None else min(cut, by_count)
        if cut is not None:
            self._first = False
        return cut
