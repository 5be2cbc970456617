"""Token sampling from one row of logits, in numpy, for the batched backend.

The batched context decodes many sequences with one ``llama_decode`` and so
cannot use llama-cpp-python's per-``Llama`` sampler chain; this reproduces
the chain ``Llama.generate`` builds (llama-cpp-python 0.3, the defaults the
engine leaves alone), so an answer samples the same way on either backend:

    repeat penalty over the last 64 sampled tokens -> greedy if temperature 0,
    else top_k -> top_p -> min_p 0.05 -> temperature -> draw

As in llama.cpp, top_p and min_p see the probabilities at temperature 1 (the
temperature is applied after them), and the penalty divides a positive logit
and multiplies a negative one. Pure: no llama.cpp, testable on arrays."""
from __future__ import annotations

import collections
from typing import Optional

import numpy as np

from services.llm.schema import ResolvedSampling

PENALTY_LAST_N = 64   # Llama(last_n_tokens_size=64), the window its penalty sampler sees
MIN_P = 0.05          # Llama.generate's default min_p


class Sampler:
    """One answer's sampling state: its settings, RNG and recent tokens."""

    def __init__(self, sampling: ResolvedSampling, ban_first: frozenset[int] = frozenset()) -> None:
        self.sampling = sampling
        self.rng = np.random.default_rng(sampling.seed)
        self.recent: collections.deque[int] = collections.deque(maxlen=PENALTY_LAST_N)
        # Tokens the first sample may not be (the stop tokens: an answer is never
        # empty, as LlamaInstance does for the per-context backend).
        self._ban = np.fromiter(ban_first, dtype=np.int64) if ban_first else None

    def __call__(self, logits: np.ndarray) -> int:
        if not self.recent and self._ban is not None:     # the first sample
            logits = logits.copy()
            logits[self._ban] = -np.inf
        token = sample(logits, self.sampling, self.recent, self.rng)
        self.recent.append(token)
        return token


def sample(logits: np.ndarray, s: ResolvedSampling, recent: collections.abc.Iterable[int] = (),
           rng: Optional[np.random.Generator] = None) -> int:
    x = np.array(logits, dtype=np.float32, copy=True)
    if s.repeat_penalty != 1.0:
        ids = np.fromiter(set(recent), dtype=np.int64)
        if ids.size:
            v = x[ids]
            x[ids] = np.where(v <= 0, v * s.repeat_penalty, v / s.repeat_penalty)
    if s.temperature <= 0:
        return int(np.argmax(x))
    n = x.shape[0]
    k = s.top_k if 0 < s.top_k < n else n
    idx = np.argpartition(-x, k - 1)[:k] if k < n else np.arange(n)
    vals = x[idx]
    order = np.argsort(-vals, kind="stable")
    idx, vals = idx[order], vals[order]
    p = _softmax(vals)
    if s.top_p < 1.0:
        keep = int(np.searchsorted(np.cumsum(p), s.top_p, side="left")) + 1
        idx, vals, p = idx[:keep], vals[:keep], p[:keep]
    keep = max(1, int(np.count_nonzero(p >= MIN_P * p[0])))   # sorted: p[0] is the largest
    idx, vals = idx[:keep], vals[:keep]
    probs = _softmax(vals / s.temperature)
    rng = rng or np.random.default_rng()
    return int(idx[rng.choice(len(idx), p=probs)])


def _softmax(v: np.ndarray) -> np.ndarray:
    e = np.exp(v.astype(np.float64) - v.max())
    return e / e.sum()
