"""The question set (questions.toml): loading and validation into plain
dataclasses. A question without sources is one the documents do not answer."""
from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

QUESTIONS = Path(__file__).resolve().parent / "questions.toml"


@dataclasses.dataclass(frozen=True)
class Question:
    id: str
    question: str
    sources: tuple[str, ...]                     # documents (relative to docs/) holding the answer
    facts: tuple[tuple[re.Pattern, ...], ...]    # each fact: alternatives, any one states it

    @property
    def answerable(self) -> bool:
        return bool(self.sources)


def load(path: Path = QUESTIONS) -> list[Question]:
    """Every question, in file order; raises ValueError naming a bad entry
    (a duplicate id, a regex that does not compile, an answerable question
    without facts)."""
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    out: list[Question] = []
    seen: set[str] = set()
    for i, q in enumerate(raw.get("question", [])):
        qid = q.get("id") or f"#{i}"
        if qid in seen:
            raise ValueError(f"{path.name}: duplicate question id {qid!r}")
        seen.add(qid)
        try:
            facts = tuple(tuple(re.compile(alt, re.IGNORECASE) for alt in fact) for fact in q.get("facts", []))
        except re.error as exc:
            raise ValueError(f"{path.name}: question {qid!r}: bad pattern: {exc}") from exc
        sources = tuple(q.get("sources", []))
        if sources and not facts:
            raise ValueError(f"{path.name}: question {qid!r} has sources but no facts")
        if any(not fact for fact in facts):
            raise ValueError(f"{path.name}: question {qid!r} has a fact without alternatives")
        out.append(Question(qid, q["question"], sources, facts))
    return out
