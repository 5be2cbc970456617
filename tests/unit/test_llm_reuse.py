"""What of a KV cache a prompt reuses: the shared prefix, and past a span the
prompt dropped (older turns out of the history window) a shifted run of
cached tokens. Invariants: the reused tokens are exactly equal to the
prompt's; a shift is taken only when it saves at least MIN_RUN tokens; the
last prompt token is never counted as reused (its logits start the answer);
the span a shift drops is not counted as evicting another conversation."""
from __future__ import annotations

import random

from services.llm import reuse
from services.llm.pool import InstancePool

SYS = list(range(1000, 1024))                      # 24 tokens of system prompt


def turns(*ids: int, size: int = 40) -> list[int]:
    return [t for i in ids for t in range(i * 100, i * 100 + size)]


def check(cached: list[int], prompt: list[int], r: reuse.Reuse) -> None:
    assert cached[:r.prefix] == prompt[:r.prefix]
    if r.shifts:
        assert cached[r.drop_to:r.drop_to + r.run] == prompt[r.prefix:r.prefix + r.run]
        assert r.tokens < len(prompt)


def test_a_plain_continuation_is_its_prefix() -> None:
    cached = SYS + turns(1, 2)
    prompt = cached + turns(3)
    r = reuse.plan(cached, prompt)
    assert r == reuse.Reuse(len(cached)) and r.lost(len(cached)) == 0


def test_dropped_turns_are_shifted_out_and_the_rest_reused() -> None:
    cached = SYS + turns(1, 2, 3, 4)
    prompt = SYS + turns(3, 4) + turns(5)             # turns 1-2 left the window
    r = reuse.plan(cached, prompt)
    check(cached, prompt, r)
    assert (r.prefix, r.drop_to, r.run) == (24, 24 + 80, 80)
    assert r.tokens == 24 + 80 and r.lost(len(cached)) == 0
    # Without shifting only the system prompt is reused, and the rest of this
    # conversation's cache counts as lost.
    plain = reuse.plan(cached, prompt, shift=False)
    assert plain == reuse.Reuse(24) and plain.lost(len(cached)) == len(cached) - 24


def test_short_runs_are_not_worth_a_shift_and_the_last_token_is_evaluated() -> None:
    cached = SYS + turns(1) + turns(2, size=20)
    prompt = SYS + turns(2, size=20) + turns(3)
    assert reuse.plan(cached, prompt) == reuse.Reuse(24)          # a 20-token run < MIN_RUN
    cached = SYS + turns(1, 2)
    prompt = SYS + turns(2)                                       # nothing new after the run
    r = reuse.plan(cached, prompt)
    assert r.shifts and r.tokens == len(prompt) - 1


def test_another_conversation_shares_only_the_system_prompt() -> None:
    cached = SYS + turns(1, 2, 3)
    other = SYS + turns(7, 8)
    r = reuse.plan(cached, other)
    assert r == reuse.Reuse(24) and r.lost(len(cached)) == 120


def test_random_caches_and_prompts_always_reuse_equal_tokens() -> None:
    rng = random.Random(7)
    for _ in range(300):
        base = [rng.randrange(50) for _ in range(rng.randrange(0, 300))]
        cut_a = rng.randrange(0, len(base) + 1)
        cut_b = rng.randrange(cut_a, len(base) + 1)
        prompt = base[:cut_a] + base[cut_b:] + [rng.randrange(50) for _ in range(rng.randrange(1, 30))]
        r = reuse.plan(base, prompt, min_run=4, probe=3)
        check(base, prompt, r)
        assert r.tokens <= len(prompt)


class Inst:
    def __init__(self, cached: list[int], can_shift: bool = True) -> None:
        self.cached, self.can_shift = cached, can_shift

    def cached_tokens(self) -> list[int]:
        return self.cached


async def test_the_pool_gives_a_moved_window_its_own_instance_and_lets_it_be_warmed() -> None:
    mine = Inst(SYS + turns(1, 2, 3, 4))
    empty = Inst(SYS)
    pool = InstancePool([empty, mine], max_waiting=4, wait_timeout_s=1.0)
    prompt = SYS + turns(3, 4) + turns(5)
    # Background warm-up: shifting out its own old turns evicts nobody.
    assert pool.try_checkout(prompt, max_evict=48) is mine
    pool.release(mine)
    assert await pool.checkout(prompt) is mine
    pool.release(mine)
    # An instance that cannot shift is only as good as its prefix.
    mine.can_shift = False
    assert pool.try_checkout(prompt, max_evict=48) is empty
