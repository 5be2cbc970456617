"""Fitting a conversation into the context window: a token budget, not an
item count.

The gateway sends a window of recent items (services/gateway/history.py),
but items vary in length: 24 items of two-sentence answers already fill
SmolLM2's 2048-token context (measured: bench/bench_long_conversation.py
failed at turn 30 with "prompt is 2051 tokens"). When the rendered prompt
leaves less than the answer's room, the oldest messages are dropped, in
blocks of BLOCK messages so the cut point (and the cached prefix behind it)
moves rarely; the system messages and the last user turn always stay. The
dropped span is shifted out of the KV cache (reuse.py), not re-evaluated."""
from __future__ import annotations

from typing import Callable, Sequence

BLOCK = 4                 # messages dropped at a time (two turns)
MAX_ANSWER_ROOM = 256     # room kept for the answer, at most this many tokens


def answer_room(n_ctx: int) -> int:
    """Tokens kept free for the answer: the same for every request of a
    conversation, so a prefill makes the same cut as the answer after it."""
    return max(1, min(MAX_ANSWER_ROOM, n_ctx // 4))


def fit(messages: Sequence[dict[str, str]], encode: Callable[[list[dict[str, str]]], list[int]],
        budget: int) -> tuple[list[dict[str, str]], list[int], int]:
    """The messages with the fewest oldest ones dropped (a multiple of BLOCK)
    so that their prompt has at most ``budget`` tokens, that prompt, and how
    many were dropped. When even the system messages and the last user turn
    exceed it, they are returned as they are (the caller reports it)."""
    msgs = list(messages)
    prompt = encode(msgs)
    if len(prompt) <= budget:
        return msgs, prompt, 0
    last_user = max((i for i, m in enumerate(msgs) if m["role"] == "user"), default=len(msgs) - 1)
    droppable = [i for i in range(last_user) if msgs[i]["role"] != "system"]
    dropped, kept = 0, msgs
    while dropped < len(droppable):
        dropped = min(len(droppable), dropped + BLOCK)
        gone = set(droppable[:dropped])
        kept = [m for i, m in enumerate(msgs) if i not in gone]
        prompt = encode(kept)
        if len(prompt) <= budget:
            return kept, prompt, dropped
    return kept, prompt, dropped
