"""Exact cosine nearest neighbours for scoring functions called on their own.

Inside a pipeline run the signals step computes the kNN graph once
(:class:`hl_debug.signals.context.SignalContext`, with :mod:`hl_debug.models.neighbors`) and
hands it to every scoring function; these functions compute neighbours themselves only
when called without it (tests, benchmarks, the detector's calibration subsample). The
computation is the same as the models' — blocked ``X @ X.T``, top ``max(k, MIN_K)`` by
``argpartition``, ties broken by index — so both give the same neighbours, exact ties
(duplicate texts) included. Scoring stays independent of ``hl_debug.models``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Width the neighbours are computed at before the cut to ``k`` (as the run's graph is).
MIN_K = 32
_BLOCK_FLOATS = 16_000_000


def exact_knn(X: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most cosine-similar other rows of every row of ``X``.

    Parameters
    ----------
    X : array, shape (n, dim)
        Vectors (L2-normalised here when they are not).
    k : int
        1 <= k < n; the row itself is never among them.

    Returns
    -------
    indices : int64 array, shape (n, k)
        Most similar first, ties broken by index.
    similarities : float32 array, shape (n, k)
    """
    X = np.ascontiguousarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-D array (n_rows, dim), got shape {X.shape}")
    n = len(X)
    if not 1 <= k < n:
        raise ValueError(f"k must be between 1 and n_rows - 1 ({n - 1}), got {k}")
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    if not np.allclose(norms, 1.0, atol=1e-4):
        X = X / np.where(norms == 0, 1.0, norms)
    width = min(n - 1, max(k, MIN_K))
    idx = np.empty((n, width), dtype=np.int64)
    sim = np.empty((n, width), dtype=np.float32)
    block = max(1, min(n, _BLOCK_FLOATS // max(n, 1)))
    for start in range(0, n, block):
        stop = min(n, start + block)
        S = X[start:stop] @ X.T  # (block, n) cosine similarities
        S[np.arange(stop - start), np.arange(start, stop)] = -np.inf  # never your own neighbour
        part = np.argpartition(-S, width - 1, axis=1)[:, :width]
        psim = np.take_along_axis(S, part, axis=1)
        order = np.lexsort((part, -psim), axis=1)
        idx[start:stop] = np.take_along_axis(part, order, axis=1)
        sim[start:stop] = np.take_along_axis(psim, order, axis=1)
    return idx[:, :k], np.clip(sim[:, :k], -1.0, 1.0)
