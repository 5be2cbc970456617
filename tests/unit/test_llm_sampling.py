"""Invariant: the batched backend's numpy sampler follows the chain
llama-cpp-python's Llama.generate uses (penalty -> greedy | top_k -> top_p ->
min_p -> temperature -> draw), so switching backends doesn't change how
answers are sampled; a seed makes a draw reproducible."""
from __future__ import annotations

import numpy as np

from services.llm.sampling import Sampler, sample
from services.llm.schema import ResolvedSampling


def s(temperature=0.7, top_p=1.0, top_k=0, repeat_penalty=1.0, seed=1):
    return ResolvedSampling(temperature, top_p, top_k, repeat_penalty, seed)


LOGITS = np.array([1.0, 3.0, 2.9, -1.0, 0.5], dtype=np.float32)


def test_temperature_zero_is_argmax():
    assert sample(LOGITS, s(temperature=0.0)) == 1


def test_repeat_penalty_divides_positive_and_multiplies_negative_logits():
    # 3.0 / 1.5 = 2.0 < 2.9: the recent token loses the greedy pick.
    assert sample(LOGITS, s(temperature=0.0, repeat_penalty=1.5), recent=[1]) == 2
    neg = np.array([-1.0, -1.2], dtype=np.float32)
    assert sample(neg, s(temperature=0.0, repeat_penalty=2.0), recent=[0]) == 1


def test_top_k_one_is_greedy_whatever_the_temperature():
    rng = np.random.default_rng(0)
    assert {sample(LOGITS, s(temperature=5.0, top_k=1), rng=rng) for _ in range(50)} == {1}


def test_top_p_keeps_the_smallest_head_reaching_p():
    rng = np.random.default_rng(0)
    # softmax at T=1: token 1 ~0.45, token 2 ~0.41: p=0.5 keeps exactly those two.
    seen = {sample(LOGITS, s(temperature=1.0, top_p=0.5), rng=rng) for _ in range(200)}
    assert seen == {1, 2}


def test_min_p_drops_tokens_far_below_the_best():
    rng = np.random.default_rng(0)
    x = np.array([10.0, 0.0, 9.5], dtype=np.float32)   # token 1 has p/pmax ~ e^-10 < 0.05
    assert {sample(x, s(temperature=1.0), rng=rng) for _ in range(200)} == {0, 2}


def test_a_seed_reproduces_the_draws():
    a, b = Sampler(s(temperature=1.0, seed=7)), Sampler(s(temperature=1.0, seed=7))
    assert [a(LOGITS) for _ in range(20)] == [b(LOGITS) for _ in range(20)]


def test_an_answer_never_starts_with_a_stop_token():
    """Greedy or not, the first sample skips the banned (stop) tokens even when
    they lead; later samples may end the answer."""
    x = np.array([5.0, 1.0, 0.0], dtype=np.float32)      # token 0 (the stop) leads
    greedy = Sampler(s(temperature=0.0), ban_first=frozenset({0}))
    assert greedy(x) == 1 and greedy(x) == 0
    for seed in range(20):
        assert Sampler(s(temperature=1.0, seed=seed), ban_first=frozenset({0}))(x) != 0
