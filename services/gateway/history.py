"""Which conversation items the LLM sees: the most recent ``max_items``, with
the window's start moved in blocks rather than one item at a time.

The LLM service reuses its KV cache for the longest prefix a prompt shares
with the previous one. A window that slides by one item every turn changes
the prompt right after the system prompt, so once a conversation is longer
than the window every answer re-evaluates the whole history: measured on the
2-core host, 1.8 s to the first token for a 758-token prompt instead of
~50 ms, from about the 13th turn on (issue #12 saw the same in text). Moving
the start by half the window keeps the prefix stable for that many items and
pays one re-evaluation per block instead of one per turn."""
from __future__ import annotations

import math


def window_start(n_items: int, max_items: int) -> int:
    """Index of the first item to keep out of ``n_items``: between
    ``max_items - max_items // 2`` (exclusive) and ``max_items`` items are kept."""
    if max_items <= 0 or n_items <= max_items:
        return 0
    block = max(1, max_items // 2)
    return math.ceil((n_items - max_items) / block) * block
