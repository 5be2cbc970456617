"""A deterministic stand-in for the embedding model (same interface as
embedder.Embedder): hashed bag of lower-cased words, L2-normalised. Texts that
share words score higher, which is all the index and engine tests need; it
counts how many texts it embedded so tests can see what was re-embedded."""
from __future__ import annotations

import hashlib
import re
from typing import Sequence

import numpy as np

WORD = re.compile(r"[a-z0-9]+")


class HashingEmbedder:
    def __init__(self, dim: int = 256, model_id: str = "fake-hashing") -> None:
        self.dim = dim
        self.model_id = model_id
        self.embedded = 0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        for row, text in enumerate(texts):
            for w in WORD.findall(text.lower()):
                h = int.from_bytes(hashlib.blake2b(w.encode(), digest_size=4).digest(), "little")
                out[row, h % self.dim] += 1.0
            norm = np.linalg.norm(out[row])
            if norm:
                out[row] /= norm
        self.embedded += len(texts)
        return out
