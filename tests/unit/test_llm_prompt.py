"""Invariant: retrieved passages reach the model as one grounding system
message just before the latest user turn (with every passage's title, source
and text and the spoken-style instruction), the caller's conversation is kept
as sent, and earlier turns stay a stable prefix across turns (KV-cache reuse)."""
from __future__ import annotations

from services.llm.prompt import (
    DEFAULT_SYSTEM_PROMPT, GROUNDING_INSTRUCTIONS, build_messages, grounding_message,
)
from services.llm.schema import ChatMessage, Passage

P1 = Passage(source="user-guide.md", title="Interrupting the assistant",
             text="Start speaking while it talks: it stops and listens.", score=0.7)
P2 = Passage(source="runbooks/asr-down.md", title="ASR is down",
             text="Restart the ASR service with make run.", score=0.5)


def test_default_system_prompt_added_when_caller_sends_none():
    out = build_messages([ChatMessage("user", "hi")], [])
    assert out == [{"role": "system", "content": DEFAULT_SYSTEM_PROMPT},
                   {"role": "user", "content": "hi"}]


def test_callers_system_prompt_is_kept_and_not_duplicated():
    out = build_messages([ChatMessage("system", "Be a pirate."), ChatMessage("user", "hi")], [])
    assert [m["role"] for m in out] == ["system", "user"]
    assert out[0]["content"] == "Be a pirate."


def test_passages_go_just_before_the_last_user_turn():
    conv = [ChatMessage("user", "first question"), ChatMessage("assistant", "first answer"),
            ChatMessage("user", "how do I interrupt it?")]
    out = build_messages(conv, [P1, P2])
    assert [m["role"] for m in out] == ["system", "user", "assistant", "system", "user"]
    grounding = out[3]["content"]
    assert grounding.startswith(GROUNDING_INSTRUCTIONS)
    for p in (P1, P2):
        assert p.title in grounding and p.source in grounding and p.text in grounding
    assert grounding.index(P1.title) < grounding.index(P2.title)  # retrieval order kept
    assert out[4]["content"] == "how do I interrupt it?"


def test_no_grounding_message_without_passages():
    out = build_messages([ChatMessage("user", "hi")], [])
    assert not any(GROUNDING_INSTRUCTIONS in m["content"] for m in out)


def test_earlier_turns_are_a_stable_prefix_across_turns():
    turn1 = [ChatMessage("user", "what is this?")]
    turn2 = turn1 + [ChatMessage("assistant", "a voice assistant"), ChatMessage("user", "is it private?")]
    first = build_messages(turn1, [P1])
    second = build_messages(turn2, [P2])
    # System prompt and the first user turn are identical, so their tokens can be reused.
    assert second[0] == first[0]
    assert second[1] == {"role": "user", "content": "what is this?"}


def test_instructions_ask_for_brief_spoken_answers_without_markdown():
    text = grounding_message([P1]).lower()
    assert "markdown" in text and ("brief" in text or "short" in text)


def test_long_passages_are_clipped():
    long = Passage(source="a.md", title="A", text="word " * 2000)
    assert len(grounding_message([long])) < 2000
