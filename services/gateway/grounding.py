"""Whether the retrieved passages can answer the question at all.

Retrieval returns its best passages above a score floor even when the
documents hold nothing about the question (the answer eval's "How do I
enable the Alexa skill of the assistant?" retrieves passages that hold none
of its content words). The model (SmolLM2-135M)
does not decline by itself: given such passages it answers from them, and
invents platform facts. So the gateway judges before asking it: the
question's *coverage* is the share of its content words (common.content_words,
less a few words every question about this product has) found anywhere in
the passages, words compared by their first ``PREFIX`` letters and
identifiers read as their parts (CamelCase, snake_case). A question
whose passages cover less than ``decline_below`` of it is answered with
``DECLINE`` without running the model. Measured on the answer eval's 46
questions (docs/answers.md): under 0.5 declined 4 of the 7 outside
questions and none of the 39 in-document ones (an offline estimate before
building it had said 1 of 38). Only an answer to the user's latest words is
judged (planning.py: not a response given its own instructions).

No passages (retrieval off, failed, or nothing above the floor: small talk,
general questions) means no judgement: the model answers as ever. Pure and
lexical: no model, no I/O."""
from __future__ import annotations

import re
from typing import Sequence

from common.content_words import words

PREFIX = 5
# Words of nearly every question about this product, found in nearly every passage.
GENERIC = frozenset({"assistant", "platform", "use", "make", "get"})
DECLINE = "I don't know. My documents don't cover that."


IDENTIFIER_CAMEL = re.compile(r"([a-z0-9])([A-Z])")


def _parts(text: str) -> str:
    """Identifiers read as their words: the documents name alerts, metrics and
    settings as identifiers (a runbook titled VoiceTurnLatencyErrorBudgetBurnFast
    about voice_to_voice_latency), the question says "the latency alert"."""
    return IDENTIFIER_CAMEL.sub(r"\1 \2", text).replace("_", " ")


def _keys(text: str) -> set[str]:
    return {w[:PREFIX] for w in words(_parts(text)) if w not in GENERIC}


def coverage(question: str, passages: Sequence) -> float | None:
    """Share of the question's content words found in the passages (title and
    text); None when there is nothing to judge (no passages, no content word)."""
    asked = _keys(question)
    if not passages or not asked:
        return None
    found: set[str] = set()
    for p in passages:
        found |= _keys(f"{p.title} {p.text}")
    return len(asked & found) / len(asked)


def declines(question: str, passages: Sequence, decline_below: float) -> float | None:
    """The coverage when it is under ``decline_below`` (answer DECLINE), else None."""
    if decline_below <= 0:
        return None
    c = coverage(question, passages)
    return c if c is not None and c < decline_below else None
