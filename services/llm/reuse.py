"""How much of an instance's KV cache a new prompt can reuse.

A prefix the prompt shares with the cached tokens is reused as it is. Beyond
that prefix, a conversation whose history window moved (older turns left
the prompt, services/gateway/history.py) leaves out a span of the cache and
then goes on with tokens the cache holds: the span can be removed and the
rest shifted back (llama.cpp's context shift: the cached keys' RoPE
positions are moved), instead of evaluating the whole remaining history
again (measured on the 2-core host: 15-20 s to the first token at such a
move under load, ~0.2 s otherwise; bench/bench_long_conversation.py).

The shifted tokens keep what they attended to when they were computed (the
dropped turns included), as with llama.cpp's own context shift: the answer
is not bit-identical to a fresh evaluation, and a setting turns it off."""
from __future__ import annotations

import dataclasses
from typing import Sequence

MIN_RUN = 32    # a shift must save at least this many tokens
PROBE = 8       # tokens of the prompt looked up in the cache to find the run


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


@dataclasses.dataclass(frozen=True)
class Reuse:
    """``cached[:prefix]`` is kept; with a shift, ``cached[prefix:drop_to]`` is
    removed and ``cached[drop_to:drop_to + run]`` (equal to
    ``prompt[prefix:prefix + run]``) moves back to follow the prefix."""
    prefix: int
    drop_to: int = 0
    run: int = 0

    @property
    def tokens(self) -> int:
        """Prompt tokens that need no evaluation."""
        return self.prefix + self.run

    @property
    def shifts(self) -> bool:
        return self.run > 0

    def lost(self, n_cached: int) -> int:
        """Cached tokens this prompt evicts that are not its own conversation's
        dropped turns (the span a shift removes is this conversation's past)."""
        if not self.shifts:
            return n_cached - self.prefix
        return n_cached - (self.drop_to + self.run)


def plan(cached: Sequence[int], prompt: Sequence[int], shift: bool = True,
         min_run: int = MIN_RUN, probe: int = PROBE) -> Reuse:
    """The largest reuse of ``cached`` for ``prompt``: the shared prefix, and
    with ``shift`` the longest run of cached tokens the prompt continues with
    after it (at least ``min_run`` long)."""
    cached, prompt = list(cached), list(prompt)
    p = common_prefix(cached, prompt)
    if not shift or p >= len(prompt) or p + 1 >= len(cached):
        return Reuse(p)
    key = prompt[p:p + probe]
    if len(key) < probe:
        return Reuse(p)
    best = Reuse(p)
    b = p + 1
    while True:
        try:
            b = cached.index(key[0], b)
        except ValueError:
            break
        if cached[b:b + probe] == key:
            run = common_prefix(cached[b:], prompt[p:])
            # The last prompt token is always evaluated (its logits start the answer).
            run = min(run, len(prompt) - 1 - p)
            if run >= min_run and run > best.run:
                best = Reuse(p, b, run)
        b += 1
    return best
