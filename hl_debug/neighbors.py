"""Exact cosine k-nearest neighbours, computed once per process and shared.

The map (UMAP's graph, the ``neighbors`` table), the label-issue detector, the annotation
queue and the near-duplicate finder all need the nearest neighbours of the same vectors.
:func:`knn` computes them once (blocked ``X @ X.T`` on L2-normalised float32 vectors, so
memory stays bounded at any n) and memoises the result by the vectors' content, so a
pipeline run pays for one pass over the data per distinct set of vectors, whichever step
asks first.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

# Neighbours computed per row at the least: every caller in the pipeline asks for <= 30,
# so the first request pays for all later ones.
MIN_K = 32
# Similarity block held in memory at once: rows_per_block * n floats.
BLOCK_FLOATS = 16_000_000

_CACHE: dict[str, tuple[np.ndarray, np.ndarray]] = {}
_LOCK = threading.Lock()
_MAX_ENTRIES = 4


def fingerprint(X: np.ndarray) -> str:
    """Content hash of an array (shape, dtype and bytes)."""
    h = hashlib.sha1(f"{X.shape}{X.dtype}".encode())
    h.update(np.ascontiguousarray(X).data)
    return h.hexdigest()


def _compute(X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    n = len(X)
    idx = np.empty((n, k), dtype=np.int64)
    sim = np.empty((n, k), dtype=np.float32)
    block = max(1, min(n, BLOCK_FLOATS // max(n, 1)))
    rows = np.arange(n)
    for start in range(0, n, block):
        stop = min(n, start + block)
        S = X[start:stop] @ X.T  # (block, n) cosine similarities
        S[rows[: stop - start], rows[start:stop]] = -np.inf  # never your own neighbour
        part = np.argpartition(-S, k - 1, axis=1)[:, :k]
        psim = np.take_along_axis(S, part, axis=1)
        # Most similar first; ties broken by index so results are deterministic.
        order = np.lexsort((part, -psim), axis=1)
        idx[start:stop] = np.take_along_axis(part, order, axis=1)
        sim[start:stop] = np.take_along_axis(psim, order, axis=1)
    return idx, np.clip(sim, -1.0, 1.0)


def knn(X: Any, k: int, *, cache: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most cosine-similar other rows of every row of ``X``.

    Parameters
    ----------
    X : array, shape (n, dim)
        Vectors; rows are L2-normalised here (a no-op for sentence embeddings), so
        cosine similarity is a dot product.
    k : int
        Neighbours per row, 1 <= k < n. The row itself is never among them; an exact
        duplicate of it is.
    cache : bool
        Memoise by content for later calls in this process.

    Returns
    -------
    indices : int64 array, shape (n, k)
        Most similar first (ties broken by index).
    similarities : float32 array, shape (n, k)
        Cosine similarities, non-increasing along each row.
    """
    X = np.ascontiguousarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-D array (n_rows, dim), got shape {X.shape}")
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    if not np.allclose(norms, 1.0, atol=1e-4):
        X = X / np.where(norms == 0, 1.0, norms)
    n = len(X)
    if not 1 <= k < n:
        raise ValueError(f"k must be between 1 and n_rows - 1 ({n - 1}), got {k}")
    if not cache:
        return _compute(X, k)
    key = fingerprint(X)
    with _LOCK:
        hit = _CACHE.get(key)
        if hit is None or hit[0].shape[1] < k:
            width = min(n - 1, max(k, MIN_K))
            log.info("computing %d nearest neighbours of %d vectors", width, n)
            hit = _compute(X, width)
            for arr in hit:  # shared between callers: read-only, so nobody edits another's result
                arr.setflags(write=False)
            if len(_CACHE) >= _MAX_ENTRIES:
                _CACHE.pop(next(iter(_CACHE)))
            _CACHE[key] = hit
    return hit[0][:, :k], hit[1][:, :k]


def clear_cache() -> None:
    with _LOCK:
        _CACHE.clear()
