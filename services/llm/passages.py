"""Which sentences of the retrieved passages the model reads.

Retrieval returns whole sections (60-200 words each, three by default):
several hundred words, most of them about something next to the question.
A 135M model answers from whatever it read last or most, and every word
costs prompt time before the first token. So the passages are cut down to
the sentences that share words with the question (weighted by how rare the
word is among the passages), plus the opening sentence of each passage whose
heading shares words with it (a section's first sentence usually carries
its topic: "To start ..., run make run"), within a word budget, in their
original order. Lexical and pure: no model, deterministic."""
from __future__ import annotations

import math
import re
from typing import Sequence

from common.content_words import words

SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9`\"'(])")
OPENING_BONUS = 0.3   # less than one shared word: a sentence saying the thing asked wins
LIST_MARKER = re.compile(r"^(\d+[.)]|[-*+])\s+")


def sentences(text: str) -> list[str]:
    """Sentences of a passage: paragraphs split at sentence ends; a piece that
    introduces the next one ("...run:") stays with it (a command on its own
    line is the point of the sentence before it)."""
    out: list[str] = []
    for para in re.split(r"\n\s*\n|\n(?=\s*[-*+]\s|\s*\d+[.)]\s)", text):
        para = " ".join(para.split())
        marker = LIST_MARKER.match(para)     # "1. Roll back": not a sentence "1."
        pieces = SENTENCE_END.split(para[marker.end():] if marker else para)
        if marker:
            pieces[0] = marker.group() + pieces[0]
        for s in pieces:
            if not s:
                continue
            if out and out[-1].endswith(":"):
                out[-1] = f"{out[-1]} {s}"
            else:
                out.append(s)
    return out


def topic(title: str, source: str) -> str:
    """A passage's heading and its document's name as words: a runbook's
    "Mitigate" section is about "Voice Turn Latency ..." (its file name)."""
    stem = source.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return f"{title} {re.sub(r'(?<=[a-z])(?=[A-Z])|[-_]', ' ', stem)}"


def select(passages: Sequence[tuple[str, str]], question: str, budget_words: int) -> list[list[str]]:
    """For each (topic, text) passage (topic: ``topic()``), the sentences
    kept, in order; at most ``budget_words`` words in all, the sentences about
    the question first (the best one is kept even when alone it is longer),
    then the others in retrieval order. A passage may keep none."""
    q = words(question)
    split = [sentences(text) for _, text in passages]
    # Rarer among the passages = more telling (every passage says "assistant").
    df: dict[str, int] = {}
    for sents in split:
        for w in set().union(*map(words, sents)) if sents else ():
            df[w] = df.get(w, 0) + 1
    n = max(1, len(passages))

    def weight(ws: set[str]) -> float:
        return sum(math.log(1 + n / df.get(w, 1)) for w in ws & q)

    # Words every passage has ("assistant") tell no section apart: they put none on topic.
    telling = {w for w in q if n == 1 or df.get(w, 0) < n}
    scored: list[tuple[float, int, int]] = []
    for i, ((title, _), sents) in enumerate(zip(passages, split)):
        for j, s in enumerate(sents):
            score = weight(words(s))
            if j == 0:
                # A section opens with its topic; the best-ranked one a little anyway.
                score += weight(words(title) & telling) + (OPENING_BONUS if i == 0 else 0.0)
            if score > 0:
                # Earlier passages ranked higher by retrieval win ties.
                scored.append((score - 0.01 * i, i, j))
    scored.sort(key=lambda t: -t[0])
    # The sentences about the question first, then the rest in retrieval order
    # while the budget lasts: passages that fit are read whole.
    order = [(i, j) for _, i, j in scored]
    first = set(order)
    order += [(i, j) for i, sents in enumerate(split) for j in range(len(sents)) if (i, j) not in first]
    keep: set[tuple[int, int]] = set()
    used = 0
    for i, j in order:
        n_words = len(split[i][j].split())
        if keep and used + n_words > budget_words:
            continue
        keep.add((i, j))
        used += n_words
    return [[s for j, s in enumerate(sents) if (i, j) in keep] for i, sents in enumerate(split)]
