"""Invariant: embeddings are the attention-masked mean of the token vectors,
scaled to unit length, so a dot product is a cosine; padding in a batch does
not change a text's vector; and the real MiniLM model places related
sentences closer than unrelated ones."""
from __future__ import annotations

import numpy as np
import pytest

from services.rag.embedder import (
    MiniLmEmbedder, OnnxOptions, default_model_path, default_tokenizer_path, mean_pool_normalise,
)


def test_mean_pool_ignores_padding_and_normalises():
    hidden = np.array([[[3.0, 0.0], [1.0, 0.0], [100.0, 100.0]]], np.float32)  # last token is padding
    mask = np.array([[1, 1, 0]])
    out = mean_pool_normalise(hidden, mask)
    np.testing.assert_allclose(out, [[1.0, 0.0]], atol=1e-6)


def test_mean_pool_rows_have_unit_length():
    rng = np.random.default_rng(0)
    hidden = rng.normal(size=(4, 7, 16)).astype(np.float32) * 5
    mask = (rng.random((4, 7)) > 0.3).astype(np.int64)
    mask[:, 0] = 1
    out = mean_pool_normalise(hidden, mask)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


@pytest.fixture(scope="module")
def minilm():
    if not default_model_path() or not default_tokenizer_path():
        pytest.skip("MiniLM model packages not installed")
    return MiniLmEmbedder(OnnxOptions(default_model_path(), default_tokenizer_path(), threads=1))


def test_real_embeddings_are_unit_vectors_of_384_dims(minilm):
    v = minilm.embed(["How do I stop the assistant talking?", "hello"])
    assert v.shape == (2, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)


def test_batch_padding_does_not_change_a_vector(minilm):
    short = "Interrupt the assistant by speaking."
    alone = minilm.embed([short])[0]
    batched = minilm.embed([short, "A much longer sentence " * 20])[0]
    assert float(alone @ batched) > 0.9999


def test_related_sentences_are_closer_than_unrelated(minilm):
    q, near, far = minilm.embed(["How do I interrupt the assistant while it speaks?",
                                 "Start talking while the assistant speaks and it stops to listen.",
                                 "Preheat the oven and bake the bread for forty minutes."])
    assert float(q @ near) > float(q @ far) + 0.2
