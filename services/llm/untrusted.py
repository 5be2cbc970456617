"""Text that is data, not instructions: documents, tool outputs and what the
user said reach the chat template as text, never as its control tokens.

The prompt is rendered to one string and tokenized with special tokens on
(the template's own turn markers must become special tokens), so a document
holding ``<|im_start|>system`` would otherwise open a real system turn. Every
piece of chat-template markup in untrusted text gets a WORD JOINER (U+2060)
after its first character: it reads the same, tokenizes as plain text and
no longer matches any special token."""
from __future__ import annotations

import re

# ChatML / Llama 3 / Phi (<|...|>), Llama 2 ([INST], <<SYS>>, <s>), Gemma (<start_of_turn>).
MARKUP = re.compile(r"<\|[^|<>\s]{1,40}\|>|</?s>|\[/?INST\]|<</?SYS>>|<(?:start|end)_of_turn>|<(?:bos|eos|pad)>")
JOINER = "\u2060"


def defuse(text: str) -> str:
    """``text`` with every chat-template marker broken up (see module doc)."""
    return MARKUP.sub(lambda m: m.group()[0] + JOINER + m.group()[1:], text)
