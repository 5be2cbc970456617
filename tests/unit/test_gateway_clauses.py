"""The reply's first clause is cut early; with a growth factor, later
clauses are cut after a ramp of word counts (4, 8, 16, ...), without one
they are not.

Invariants: the first clause ends at the first strong boundary, at a comma
once it has two words, or after six complete words (a word is complete only
once the whitespace after it arrived, so a streamed word is never cut in
two); from the second clause on, the usual rules of common.text apply
(a comma needs four words, no word-count cut); nothing is lost or reordered;
0 turns the early cut off. With growth g, the k-th later clause is cut after
first_max_words * g**k complete words unless the usual rules cut it sooner;
the caps grow per clause, so a long reply ends up with sentence-long clauses."""
from __future__ import annotations

import pytest

from common.text import ClauseSplitter
from services.gateway.clauses import FastFirstClauseSplitter

LONG = ("The weather today is sunny and warm with a light breeze from the west. "
        "Later this afternoon some clouds will roll in, but no rain is expected, so it is a fine day.")


def stream(splitter: ClauseSplitter, text: str) -> list[str]:
    """Push ``text`` as an LLM streams it (one word per delta, leading space)."""
    out: list[str] = []
    for i, word in enumerate(text.split(" ")):
        out += splitter.push(word if i == 0 else " " + word)
    tail = splitter.flush()
    return out + ([tail] if tail else [])


def test_first_clause_is_cut_after_six_words_later_ones_by_the_usual_rules():
    clauses = stream(FastFirstClauseSplitter(), LONG)
    assert clauses[0] == "The weather today is sunny and"
    assert clauses[1:] == stream(ClauseSplitter(), LONG.removeprefix(clauses[0] + " "))
    assert " ".join(clauses) == LONG


def test_first_clause_is_cut_at_a_comma_after_two_words():
    text = "Sure thing, the museum opens at nine, and it closes at six."
    assert stream(FastFirstClauseSplitter(), text) == ["Sure thing,", "the museum opens at nine,",
                                                       "and it closes at six."]
    # one word before the comma is too short to speak on its own
    assert stream(FastFirstClauseSplitter(), "Yes, I can.") == ["Yes, I can."]


def test_a_word_is_never_cut_before_it_is_complete():
    s = FastFirstClauseSplitter(first_max_words=3)
    assert s.push("One two thr") == []
    assert s.push("ee") == []               # "three" may still grow
    assert s.push(" four") == ["One two three"]
    assert s.flush() == "four"


@pytest.mark.parametrize("text", ["Hi.", "Paris is the capital of France.", "What? Really? Yes."])
def test_short_sentences_are_unchanged(text):
    assert stream(FastFirstClauseSplitter(), text) == stream(ClauseSplitter(), text)


def test_zero_turns_the_early_cut_off():
    assert stream(FastFirstClauseSplitter(0, 0), LONG) == stream(ClauseSplitter(), LONG)


def test_later_clauses_follow_a_ramp_of_word_caps():
    words = " ".join(f"w{i}" for i in range(40)) + "."
    clauses = stream(FastFirstClauseSplitter(first_max_words=4, growth=2.0), words)
    assert [len(c.split()) for c in clauses] == [4, 8, 16, 12]
    assert " ".join(clauses) == words


def test_the_ramp_yields_to_punctuation_and_keeps_growing():
    text = ("Sure thing, the museum opens at nine. It is on the main square next to the old town hall "
            "and the tickets cost twelve euros for adults and six for children.")
    clauses = stream(FastFirstClauseSplitter(first_weak_words=2, first_max_words=4, growth=2.0), text)
    assert clauses == ["Sure thing,", "the museum opens at nine.",            # punctuation, under the cap of 8
                       "It is on the main square next to the old town hall and the tickets cost",  # cap 16
                       "twelve euros for adults and six for children."]                           # cap 32
    assert " ".join(clauses) == text


def test_growth_zero_keeps_the_usual_rules_after_the_first_clause():
    assert stream(FastFirstClauseSplitter(2, 6, 0.0), LONG) == stream(FastFirstClauseSplitter(2, 6), LONG)
