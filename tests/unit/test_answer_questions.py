"""The answer eval's question set (eval/answers/questions.toml).

Invariants: at least 30 questions are answered in docs/ and at least 5 are
not; every source exists; every key fact is written from the documents (it
matches the text of one of its sources) and is not given away by the
question itself (an answer that only repeats the question states nothing);
a bad entry is refused with its id named."""
from __future__ import annotations

from pathlib import Path

import pytest

from eval.answers.questions import load

DOCS = Path(__file__).resolve().parents[2] / "docs"
QUESTIONS = load()


def test_the_set_has_enough_questions_of_both_kinds():
    assert sum(q.answerable for q in QUESTIONS) >= 30
    assert sum(not q.answerable for q in QUESTIONS) >= 5


@pytest.mark.parametrize("q", [q for q in QUESTIONS if q.answerable], ids=lambda q: q.id)
def test_every_fact_is_in_a_source_and_not_in_the_question(q):
    texts = []
    for s in q.sources:
        assert (DOCS / s).is_file(), f"{q.id}: no document {s}"
        texts.append(" ".join((DOCS / s).read_text(encoding="utf-8").replace("`", "").split()))
    for fact in q.facts:
        assert any(p.search(t) for p in fact for t in texts), \
            f"{q.id}: fact {[p.pattern for p in fact]} is in none of {q.sources}"
        assert not any(p.search(q.question) for p in fact), \
            f"{q.id}: the question itself states {[p.pattern for p in fact]}"


def test_bad_entries_are_refused_with_their_id(tmp_path):
    f = tmp_path / "q.toml"
    f.write_text('[[question]]\nid = "x"\nquestion = "?"\nsources = ["a.md"]\nfacts = []\n')
    with pytest.raises(ValueError, match="'x' has sources but no facts"):
        load(f)
    f.write_text('[[question]]\nid = "y"\nquestion = "?"\nsources = ["a.md"]\nfacts = [["(unclosed"]]\n')
    with pytest.raises(ValueError, match="'y': bad pattern"):
        load(f)
    f.write_text('[[question]]\nid = "z"\nquestion = "?"\n\n[[question]]\nid = "z"\nquestion = "?"\n')
    with pytest.raises(ValueError, match="duplicate question id 'z'"):
        load(f)
