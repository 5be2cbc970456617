"""WER is scored on normalised text: a model is not charged for writing "8"
for "eight", "Mr." for "mister", or a hyphen for a space; and a run of words
said twice is found wherever it is."""
from __future__ import annotations

from clients.wer import normalise, number_words, repeated_run, wer


def test_numbers_are_words() -> None:
    assert normalise("8 of spades, 10 of clubs") == "eight of spades ten of clubs"
    assert [number_words(n) for n in (0, 21, 40, 105, 1000)] == \
        ["zero", "twenty one", "forty", "one hundred five", "one thousand"]
    assert wer(["eight of spades"], ["8 of Spades."]) == 0.0


def test_case_punctuation_hyphens_and_mister() -> None:
    assert normalise("Mr. John's ill-disposed!") == "mister john's ill disposed"


def test_repeated_run() -> None:
    assert repeated_run("Seven of clubs Seven of clubs") == "seven of clubs"
    assert repeated_run("for them, for them, for") == "for them"
    assert repeated_run("knock knock") is None
    assert repeated_run("eight of spades four of clubs") is None
