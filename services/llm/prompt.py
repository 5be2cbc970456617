"""Turning a chat request into the message list the model's chat template sees.

Retrieved passages go into a short system message placed just before the
latest user turn rather than into the first system message: the start of the
conversation then stays byte-identical from turn to turn, so a model instance
can reuse its KV cache for everything before the new turn (lower TTFT)."""
from __future__ import annotations

from typing import Sequence

from services.llm.schema import ChatMessage, Passage

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful voice assistant that runs entirely on this computer. "
    "Answer in one to three short spoken sentences. No markdown, no lists."
)

GROUNDING_INSTRUCTIONS = (
    "Passages from the local documents follow. Answer from them when they are "
    "relevant. Be brief and conversational, as the answer is spoken aloud; "
    "no markdown, no lists, no links."
)

# Each passage is clipped so a handful of long passages cannot crowd out the
# conversation; retrieval chunks are at most ~200 words anyway.
MAX_PASSAGE_CHARS = 1200


def grounding_message(passages: Sequence[Passage]) -> str:
    lines = [GROUNDING_INSTRUCTIONS, ""]
    for i, p in enumerate(passages, 1):
        head = p.title or p.source or f"passage {i}"
        where = f" ({p.source})" if p.source and p.source != head else ""
        text = " ".join(p.text.split())[:MAX_PASSAGE_CHARS]
        lines.append(f"[{i}] {head}{where}: {text}")
    return "\n".join(lines)


def build_messages(messages: Sequence[ChatMessage], passages: Sequence[Passage],
                   system_prompt: str = DEFAULT_SYSTEM_PROMPT) -> list[dict[str, str]]:
    """The chat-template input: a system prompt first (ours unless the caller
    sent one), the conversation, and the passages just before the last user turn."""
    out: list[dict[str, str]] = []
    for m in messages:
        content = m.content
        if m.role == "tool" and m.name:
            content = f"[{m.name}] {content}"
        out.append({"role": m.role, "content": content})
    if not out or out[0]["role"] != "system":
        out.insert(0, {"role": "system", "content": system_prompt})
    if passages:
        last_user = max((i for i, m in enumerate(out) if m["role"] == "user"), default=len(out))
        out.insert(last_user, {"role": "system", "content": grounding_message(passages)})
    return out
