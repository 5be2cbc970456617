"""Invariant: interim text does not churn. Words on which two consecutive
hypotheses agree are committed and never revised; each interim is committed
words + the new tail; changed_words counts exactly the previous tail's words
that the new interim revised."""
from __future__ import annotations

from services.asr.agreement import LocalAgreement


def test_first_hypothesis_commits_nothing() -> None:
    la = LocalAgreement()
    a = la.update("and mister")
    assert a.words == ("and", "mister")
    assert a.committed == 0 and a.changed_words == 0 and a.stability == 0.0


def test_agreed_prefix_is_committed_and_the_tail_follows() -> None:
    la = LocalAgreement()
    la.update("And Mr. John Dash")
    a = la.update("And Mr. John Dashwood had")
    assert a.words == ("And", "Mr.", "John", "Dashwood", "had")
    assert a.committed == 3
    assert a.changed_words == 1          # "Dash" → "Dashwood"
    assert a.stability == 3 / 5


def test_committed_words_survive_a_hypothesis_that_rewrites_them() -> None:
    la = LocalAgreement()
    la.update("he was not an")
    la.update("he was not an ill")            # commits he was not an
    a = la.update("he was knot ill disposed")  # the model now mishears the start
    assert a.words[:4] == ("he", "was", "not", "an")
    assert a.committed >= 4


def test_case_and_punctuation_are_not_revisions() -> None:
    la = LocalAgreement()
    la.update("he might even.")
    a = la.update("He might even have")
    assert a.changed_words == 0
    assert a.committed == 3
    # A committed word does not keep the sentence end Whisper put after the last word heard.
    la2 = LocalAgreement()
    la2.update("consider how")
    la2.update("consider how.")             # commits both; "how." was just the last word heard
    b = la2.update("consider how much")
    assert b.words == ("consider", "how", "much")
    assert b.changed_words == 0


def test_changed_words_counts_only_revised_tail_positions() -> None:
    la = LocalAgreement()
    la.update("a b c d")
    la.update("a b x y z")              # commits a b; tail x y z (prev tail c d: both changed)
    a = la.update("a b x q z w")        # commits x; prev tail y z vs new tail q z w → y revised
    assert a.words == ("a", "b", "x", "q", "z", "w")
    assert a.committed == 3
    assert a.changed_words == 1


def test_shorter_hypothesis_counts_dropped_words_as_changed() -> None:
    la = LocalAgreement()
    la.update("one two three four")
    a = la.update("one")
    assert a.words == ("one",)
    assert a.changed_words == 3


def test_commits_only_grow_over_a_stream_of_hypotheses() -> None:
    hyps = ["and", "and mister john", "and mister john dash", "and mister john dashwood had",
            "and mister john dashwood had them", "and mister john dashwood had then leisure"]
    la = LocalAgreement()
    seen: tuple[str, ...] = ()
    for h in hyps:
        a = la.update(h)
        assert a.words[:len(seen)] == seen   # nothing committed is ever revised
        seen = a.words[:a.committed]
    assert seen == ("and", "mister", "john", "dashwood", "had")
