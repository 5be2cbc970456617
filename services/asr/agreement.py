"""Local agreement for interim results: words on which the last two
hypotheses agree become committed and are never revised again, so what a
client shows does not churn. Later interims are committed words + the new
tail; ``changed_words`` counts only revised words of the previous tail.

Hypotheses are whole-utterance transcripts (each interim re-decodes the
utterance from its start), so the committed prefix has to be located in each
new hypothesis before its tail can be compared with the previous tail."""
from __future__ import annotations

import dataclasses
import difflib
import re

_NON_WORD = re.compile(r"[^\w']+")


def norm(word: str) -> str:
    """Comparison key: case and punctuation are not a revision ("Them." == "them")."""
    return _NON_WORD.sub("", word.lower())


@dataclasses.dataclass(frozen=True)
class Agreed:
    """One interim after agreement."""

    words: tuple[str, ...]     # committed + tail, what the client shows
    committed: int             # how many leading words are committed (never revised)
    changed_words: int         # words of the previous interim's tail that were revised

    @property
    def text(self) -> str:
        return " ".join(self.words)

    @property
    def stability(self) -> float:
        return self.committed / len(self.words) if self.words else 0.0


class LocalAgreement:
    """Commit the longest common prefix of the last two hypotheses' tails."""

    def __init__(self) -> None:
        self.committed: list[str] = []
        self._tail: list[str] | None = None   # uncommitted words of the previous interim

    def update(self, hypothesis: str | list[str]) -> Agreed:
        words = hypothesis.split() if isinstance(hypothesis, str) else list(hypothesis)
        tail = words[self._committed_end(words):]
        changed = 0
        if self._tail is not None:
            k = _common_prefix(self._tail, tail)
            agreed = tail[:k]
            if agreed and k == len(tail):
                agreed[-1] = _settled(agreed[-1])
            self.committed.extend(agreed)
            rest_prev, tail = self._tail[k:], tail[k:]
            changed = sum(1 for i, w in enumerate(rest_prev)
                          if i >= len(tail) or norm(tail[i]) != norm(w))
        self._tail = tail
        return Agreed(tuple(self.committed + tail), len(self.committed), changed)

    def _committed_end(self, words: list[str]) -> int:
        """Index in ``words`` just past the committed prefix.

        Usually the hypothesis starts with the committed words; when the model
        re-spells or merges a few of them, align on the matching words and map
        the unmatched remainder one to one."""
        c = [norm(w) for w in self.committed]
        h = [norm(w) for w in words]
        if not c:
            return 0
        if h[:len(c)] == c:
            return len(c)
        blocks = [b for b in difflib.SequenceMatcher(None, c, h, autojunk=False).get_matching_blocks()
                  if b.size]
        if not blocks:
            return min(len(c), len(h))
        last = blocks[-1]
        return min(len(h), last.b + last.size + (len(c) - (last.a + last.size)))


def _settled(word: str) -> str:
    """The last word of a hypothesis, without the sentence end Whisper puts after the
    last word it heard ("how." while the speaker is mid-sentence). Only that word:
    "Mr." inside the text is real. The final has real punctuation anyway."""
    return word.rstrip(".?!-…") or word


def _common_prefix(a: list[str], b: list[str]) -> int:
    k = 0
    while k < len(a) and k < len(b) and norm(a[k]) == norm(b[k]):
        k += 1
    return k
