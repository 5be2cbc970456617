"""Clause splitting feeds TTS while the LLM still streams: clauses must come out
as soon as they are complete, never cut numbers or tiny fragments, and lose no text."""
from __future__ import annotations

from common.text import ClauseSplitter, split_clauses


def test_sentences_and_long_comma_clauses_split():
    text = "Hello there, my friend. I think that, on balance, we should go now; it is late. Yes!"
    assert split_clauses(text) == [
        "Hello there, my friend.", "I think that, on balance,", "we should go now;", "it is late.", "Yes!"]


def test_streaming_emits_clause_once_boundary_is_confirmed():
    sp = ClauseSplitter()
    assert sp.push("The answer is 3.") == []   # may still become "3.5": wait for the next token
    assert sp.push("5 metres") == []
    assert sp.push(". Next") == ["The answer is 3.5 metres."]
    assert sp.flush() == "Next"


def test_no_text_is_lost_token_by_token():
    text = "Well, first you open the page, then you allow the microphone. After that, just talk!"
    sp = ClauseSplitter()
    out = []
    for i in range(0, len(text), 3):
        out += sp.push(text[i:i + 3])
    tail = sp.flush()
    rebuilt = " ".join(out + ([tail] if tail else []))
    assert rebuilt.split() == text.split()
    assert len(out) >= 2  # clauses came out before the end of the stream


def test_short_comma_fragment_is_not_cut():
    assert split_clauses("Yes, I can.") == ["Yes, I can."]
