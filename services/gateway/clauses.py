"""The reply's clause splitter: a fast first clause, and a ramp after it.

Voice-to-voice ends at the first audio, and that waits for the LLM to finish
the first clause and for TTS to synthesise all of it (Piper speaks a clause
at a time: a clause's first audio comes only once all of it is made). So the
first clause is cut early: at a weak boundary (comma, dash) once it has
``first_weak_words`` words, or, when no punctuation came yet, after
``first_max_words`` complete words.

Then the ramp (``growth``): a later clause's words must be generated and
synthesised while the ones before it play. After a four-word first clause
(~1.2 s of audio) an unbroken 20-word sentence took 1.4-1.6 s to its first
audio on a loaded host, and the listener heard 0.5-0.7 s of silence in the
middle of the answer (docs/capacity-rechecks.md, re-check 22). So each later
clause is also cut after a number of words, ``growth`` times the previous
cap (4, 8, 16, ...), unless a boundary the usual rules take
(common.text.ClauseSplitter: a sentence end, or a comma after four words)
comes first. By the third or fourth clause the cap is longer than most
sentences, so the rest of the reply keeps its prosody."""
from __future__ import annotations

import re

from common.text import ClauseSplitter

_COMPLETE_WORD = re.compile(r"\S+(?=\s)")   # a word is complete once the next whitespace came


class FastFirstClauseSplitter(ClauseSplitter):
    def __init__(self, first_weak_words: int = 2, first_max_words: int = 6, growth: float = 0.0) -> None:
        """``growth`` 0: clauses after the first keep the usual rules (no ramp)."""
        super().__init__()
        self._first = first_max_words > 0 or first_weak_words > 0
        self._first_weak_words, self._first_max_words = first_weak_words, first_max_words
        self._growth = growth
        self._cap = first_max_words * growth if growth > 0 and first_max_words > 0 else 0.0

    def _find_cut(self) -> int | None:
        if not self._first:
            cut = super()._find_cut()
            if self._cap:
                by_count = self._word_end(int(self._cap))
                if by_count is not None and (cut is None or by_count < cut):
                    cut = by_count
                if cut is not None:
                    self._cap *= self._growth
            return cut
        usual = self._min_weak_words
        if self._first_weak_words > 0:
            self._min_weak_words = self._first_weak_words
        try:
            cut = super()._find_cut()
        finally:
            self._min_weak_words = usual
        if self._first_max_words > 0:
            by_count = self._word_end(self._first_max_words)
            if by_count is not None:
                cut = by_count if cut is None else min(cut, by_count)
        if cut is not None:
            self._first = False
        return cut

    def _word_end(self, n: int) -> int | None:
        """Where the ``n``-th complete word of the clause being built ends, if it came."""
        words = [m.end() for m in _COMPLETE_WORD.finditer(self._buf)]
        return words[n - 1] if n > 0 and len(words) >= n else None
