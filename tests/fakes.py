"""Cheap, deterministic stand-ins for the heavy models, for unit tests."""

from __future__ import annotations

import hashlib
import re

import numpy as np


class FakeEncoder:
    """Bag-of-words hashing encoder: texts sharing words get similar vectors.

    Deterministic across processes (uses SHA-1, not Python's salted ``hash``), L2-normalised,
    float32, ``dim`` columns. Same interface the pipeline expects of a real encoder.
    """

    identity = "fake:bow-64"

    def __init__(self, dim: int = 64) -> None:
        self.dim = dim
        self.calls = 0
        self.texts_seen = 0

    def fit(self, X=None, y=None):
        return self

    def transform(self, texts):
        self.calls += 1
        self.texts_seen += len(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                h = int(hashlib.sha1(word.encode()).hexdigest(), 16)
                out[i, h % self.dim] += 1.0 if (h >> 8) % 2 else -1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        norms[norms == 0] = 1
        return out / norms
