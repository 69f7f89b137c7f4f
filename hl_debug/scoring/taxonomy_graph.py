"""Taxonomy advice, split evidence from the intent's own neighbour graph. Pure functions.

:func:`hl_debug.scoring.taxonomy.split_candidates` scores a split by how far apart its two
groups' *centroids* lie. Two fused meanings can lie close together and still be two
meanings: each row's nearest neighbours inside the intent then sit on its own side of the
cut. These functions measure that: the intent's rows' exact within-intent kNN graph
(:func:`within_knn`), the share of its edges that cross a cut (:func:`cut_leak`), the
graph's own best bipartition (:func:`spectral_bipartition`) and the density valley along
the axis between the two groups (:func:`valley_depth`).

``benchmarks/taxonomy.py --study-only`` ranks planted fusions by each (RESULTS.md, "Taxonomy
advisor"): none beats the centroid score on both banking77 and the bundled export over 20
seeds, so the ``taxonomy`` signal does not use them; they are kept for the study.
"""

from __future__ import annotations

import numpy as np


def within_knn(X: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` nearest rows of each row of ``X`` (cosine on L2-normalised rows, self
    excluded), positions into ``X``, shape ``(n, min(k, n - 1))``."""
    X = np.asarray(X, dtype=np.float64)
    n = len(X)
    k = int(min(k, n - 1))
    if k < 1:
        return np.zeros((n, 0), dtype=np.int64)
    S = X @ X.T
    np.fill_diagonal(S, -np.inf)
    part = np.argpartition(-S, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(S, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1).astype(np.int64)


def cut_leak(nbr: np.ndarray, groups: np.ndarray) -> float:
    """How much a 2-way cut leaks through the kNN graph: the larger, over the two sides, of
    the share of a side's rows' neighbour edges that land on the other side (0: each side's
    rows have all their neighbours on their own side; about 0.5 for a random cut)."""
    nbr, g = np.asarray(nbr), np.asarray(groups)
    if nbr.shape[1] == 0 or len(np.unique(g)) < 2:
        return 1.0
    cross = (g[nbr] != g[:, None]).mean(axis=1)
    return float(max(cross[g == j].mean() for j in (0, 1)))


def spectral_bipartition(nbr: np.ndarray, *, min_size: int = 1) -> tuple[np.ndarray, float]:
    """The kNN graph's own best 2-way cut: rows sorted by the Fiedler vector of the
    symmetrised graph's normalised Laplacian, every sweep cut with ``min_size`` rows a side
    tried, the one with the least :func:`cut_leak` returned as ``(groups 0/1, leak)``."""
    nbr = np.asarray(nbr)
    n, k = nbr.shape
    if k == 0 or n < 2 * max(1, min_size):
        return np.zeros(n, dtype=np.int64), 1.0
    W = np.zeros((n, n))
    W[np.repeat(np.arange(n), k), nbr.ravel()] = 1.0
    W = np.maximum(W, W.T)
    d = W.sum(axis=1)
    inv = 1.0 / np.sqrt(np.clip(d, 1e-12, None))
    L = np.eye(n) - inv[:, None] * W * inv[None, :]
    _, vecs = np.linalg.eigh(L)
    order = np.argsort(vecs[:, 1] * inv, kind="stable")
    best_g, best = np.zeros(n, dtype=np.int64), np.inf
    lo = max(1, min_size)
    # sweep cuts on a grid of at most 40 positions (each leak is O(n k))
    for cut in np.unique(np.linspace(lo, n - lo, num=min(40, n - 2 * lo + 1)).astype(int)):
        g = np.zeros(n, dtype=np.int64)
        g[order[cut:]] = 1
        leak = cut_leak(nbr, g)
        if leak < best:
            best_g, best = g, leak
    return best_g, float(best)


def valley_depth(X: np.ndarray, groups: np.ndarray, *, bins: int = 20) -> float:
    """Bimodality of the rows along the axis between the two groups' centroids: 1 minus the
    histogram's lowest count between the two groups' median projections over the lower of
    the two peaks (0: no dip, one mode; 1: an empty gap between the groups)."""
    X, g = np.asarray(X, dtype=np.float64), np.asarray(groups)
    if len(np.unique(g)) < 2:
        return 0.0
    axis = X[g == 1].mean(axis=0) - X[g == 0].mean(axis=0)
    p = X @ (axis / max(float(np.linalg.norm(axis)), 1e-12))
    hist, edges = np.histogram(p, bins=bins)
    mid = (edges[:-1] + edges[1:]) / 2
    a, b = np.searchsorted(mid, [np.median(p[g == 0]), np.median(p[g == 1])])
    a, b = int(min(a, bins - 1)), int(min(b, bins - 1))
    if b - a < 2:
        return 0.0
    peak = min(hist[: a + 1].max(), hist[b:].max())
    return float(1.0 - hist[a:b + 1].min() / max(peak, 1))
