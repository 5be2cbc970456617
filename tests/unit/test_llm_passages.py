"""Trimming retrieved passages to the sentences about the question
(services/llm/passages.py).

Invariants: a passage splits into sentences at sentence ends and paragraph
breaks, a numbered step stays one sentence, and a line introducing a
command keeps the command; the sentences kept are those sharing the
question's words (rarer words weigh more), plus the opening sentence of a
section whose heading or document name is on the question's topic; the
word budget holds (one best sentence may exceed it alone); order within a
passage is kept; the result is the same for the same input."""
from __future__ import annotations

from services.llm import passages as P

START = ("Starting the assistant", "On a Debian machine, open a terminal in the project folder and run:\n\n"
         "    make run\n\nThe first run installs everything it needs, which takes about five minutes. "
         "Later runs start in a few seconds. To stop the assistant, press Ctrl-C in that terminal.")
ABOUT = ("What the assistant is", "The voice assistant is a program you talk to in your web browser. "
         "It runs entirely on your own computer. The language model is deliberately tiny.")
MITIGATE = ("Mitigate", "1. Roll back the canary if one is running: the fastest fix.\n"
            "2. Restart a crash-looping backend.\n3. Scale the saturated service out.")


def test_sentences_split_at_ends_and_paragraphs_and_keep_commands_and_steps_whole():
    s = P.sentences(START[1])
    assert s[0] == "On a Debian machine, open a terminal in the project folder and run: make run"
    assert s[-1] == "To stop the assistant, press Ctrl-C in that terminal."
    assert P.sentences(MITIGATE[1])[0] == "1. Roll back the canary if one is running: the fastest fix."
    assert len(P.sentences(MITIGATE[1])) == 3


def test_the_sentences_sharing_the_questions_words_are_kept_within_the_budget():
    kept = P.select([START, ABOUT], "How do I stop the assistant?", 20)
    assert "To stop the assistant, press Ctrl-C in that terminal." in kept[0]
    assert sum(len(s.split()) for k in kept for s in k) <= 20
    # "assistant" is in every passage: alone it does not earn a place.
    assert not any("web browser" in s for s in kept[1])


def test_an_on_topic_sections_opening_sentence_is_kept_though_it_shares_no_word():
    kept = P.select([ABOUT, START], "How do I start the assistant?", 40)
    assert kept[1][0].endswith("make run")


def test_a_runbooks_file_name_puts_its_sections_on_topic():
    topic = P.topic("Mitigate", "runbooks/VoiceTurnLatencyErrorBudgetBurnFast.md")
    assert {"turn", "latency"} <= P.words(topic)
    kept = P.select([(topic, MITIGATE[1])], "What do I do when the turn latency alert fires?", 15)
    assert kept == [["1. Roll back the canary if one is running: the fastest fix."]]


def test_order_within_a_passage_is_kept_and_the_result_is_deterministic():
    q = "How long does the first run take, and how do I stop it?"
    kept = P.select([START], q, 60)
    full = P.sentences(START[1])
    assert kept[0] == [s for s in full if s in kept[0]]
    assert kept == P.select([START], q, 60)


def test_one_best_sentence_is_kept_even_over_the_budget():
    kept = P.select([START], "How do I stop the assistant?", 3)
    assert kept == [["To stop the assistant, press Ctrl-C in that terminal."]]


def test_passages_that_fit_the_budget_are_read_whole_most_relevant_sentences_first():
    kept = P.select([ABOUT, START], "How do I stop the assistant?", 500)
    assert kept == [P.sentences(ABOUT[1]), P.sentences(START[1])]
    # Over the budget, a passage sharing no word with the question gives way first.
    kept = P.select([ABOUT, START], "How do I stop the assistant?", 30)
    assert "To stop the assistant, press Ctrl-C in that terminal." in kept[1]
    assert "The language model is deliberately tiny." not in kept[0]
