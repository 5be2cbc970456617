"""A conversation longer than the context: the oldest messages are dropped
in blocks until the prompt leaves the answer its room. Invariants: system
messages and the last user turn always stay; the fewest blocks are dropped;
the same messages give the same cut (a prefill and its answer agree)."""
from __future__ import annotations

from services.llm import budget


def encode(msgs):   # one token per word plus 2 per message
    return [0] * sum(len(m["content"].split()) + 2 for m in msgs)


def conv(n_turns: int, words: int = 10):
    msgs = [{"role": "system", "content": "be brief"}]
    for i in range(n_turns):
        msgs += [{"role": "user", "content": " ".join([f"q{i}"] * words)},
                 {"role": "assistant", "content": " ".join([f"a{i}"] * words)}]
    return msgs + [{"role": "user", "content": "last question"}]


def test_a_conversation_that_fits_is_untouched():
    msgs = conv(3)
    kept, prompt, dropped = budget.fit(msgs, encode, 1000)
    assert kept == msgs and dropped == 0 and len(prompt) == len(encode(msgs))


def test_the_fewest_oldest_blocks_are_dropped():
    msgs = conv(10)                                  # 4 + 10 * 24 + 4 = 248 tokens
    kept, prompt, dropped = budget.fit(msgs, encode, 200)
    assert len(prompt) <= 200 and dropped % budget.BLOCK == 0
    assert kept[0]["role"] == "system" and kept[-1]["content"] == "last question"
    assert kept[1:-1] == msgs[1 + dropped:-1]        # a contiguous run of the newest
    fewer = [m for i, m in enumerate(msgs) if i == 0 or i > dropped - budget.BLOCK]
    assert len(encode(fewer)) > 200                  # one block less would not fit
    assert budget.fit(msgs, encode, 200) == (kept, prompt, dropped)


def test_what_cannot_fit_is_returned_for_the_caller_to_report():
    msgs = [{"role": "system", "content": "x " * 50}, {"role": "user", "content": "y " * 50}]
    kept, prompt, dropped = budget.fit(msgs, encode, 20)
    assert kept == msgs and dropped == 0 and len(prompt) > 20


def test_the_room_is_a_quarter_of_a_small_context_at_most():
    assert budget.answer_room(2048) == 256 and budget.answer_room(512) == 128
