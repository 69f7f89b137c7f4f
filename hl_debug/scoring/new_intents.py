"""Candidate new intents: the out-of-scope candidates grouped, described and compared with the
existing intents (pure functions, arrays in, rows out).

:func:`group_candidates` clusters the candidates' vectors (average linkage on cosine
distances, cut where existing intents split, :func:`intent_spread`; a group
needs ``min_size`` members, the rest are in no group); :func:`describe_groups` gives
each group its keywords (class-based TF-IDF against everything else,
:func:`hl_debug.scoring.clusters.cluster_keywords`), its representative utterances (nearest its
centroid), the existing intents nearest its centroid and a verdict: "missing phrasing of
<intent>" when its members sit as close to that intent's centroid as the intent's own rows
typically do (mean cosine similarity at least their lower quartile), else "new intent".
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

#: A group whose members are on average at least as similar to an intent's centroid as this
#: quantile of the intent's own rows is that intent's missing phrasing.
PHRASING_QUANTILE = 0.25


def _normalise(V: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(V, axis=-1, keepdims=True)
    return V / np.where(norms == 0, 1.0, norms)


def intent_spread(X: np.ndarray, y: np.ndarray) -> float:
    """Where existing intents split: midway between the typical (median) mean pairwise cosine
    distance within one intent and the typical mean distance between an intent's rows and its
    nearest other intent's rows (0.5 without two intents of two rows each).

    The mean pairwise similarity between the rows of intents ``a`` and ``b`` is the dot product
    of their (unnormalised) means, so this costs one (C, C) product.
    """
    classes = [c for c in np.unique(y[y >= 0]) if np.sum(y == c) >= 2]
    if len(classes) < 2:
        return 0.5
    sums = np.stack([X[y == c].sum(axis=0) for c in classes]).astype(np.float64)
    counts = np.array([np.sum(y == c) for c in classes], dtype=float)
    within = 1.0 - ((sums * sums).sum(axis=1) - counts) / (counts * (counts - 1))
    means = sums / counts[:, None]
    between = 1.0 - means @ means.T
    np.fill_diagonal(between, np.inf)
    return float((np.median(within) + np.median(between.min(axis=1))) / 2)


def group_candidates(X: np.ndarray, *, threshold: float, min_size: int = 3) -> np.ndarray:
    """Group id per row of ``X`` (0, 1, ... largest group first; -1: in no group).

    Average-linkage agglomerative clustering on cosine distances, cut where the mean distance
    between two groups' members exceeds ``threshold`` (:func:`intent_spread`: a group is as
    tight as an existing intent, apart as two of them are); groups under ``min_size`` members are dropped.
    """
    n = len(X)
    labels = np.full(n, -1, dtype=np.int64)
    if n < max(min_size, 2):
        return labels
    from sklearn.cluster import AgglomerativeClustering

    Xn = _normalise(np.asarray(X, dtype=np.float64))
    D = np.clip(1.0 - Xn @ Xn.T, 0.0, 2.0)
    np.fill_diagonal(D, 0.0)
    raw = AgglomerativeClustering(n_clusters=None, metric="precomputed", linkage="average",
                                  distance_threshold=threshold).fit_predict(D)
    found = [g for g in np.unique(raw) if np.sum(raw == g) >= min_size]
    found.sort(key=lambda g: (-int(np.sum(raw == g)), int(np.flatnonzero(raw == g)[0])))
    for new, g in enumerate(found):
        labels[raw == g] = new
    return labels


def intent_centroids(X: np.ndarray, y: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalised centroid per intent, (C, dim), and the ``PHRASING_QUANTILE`` of its own rows'
    cosine similarity to it, (C,) (NaN for an intent without rows)."""
    C = np.zeros((n_classes, X.shape[1]))
    rows = y >= 0
    np.add.at(C, y[rows], X[rows])
    C = _normalise(C)
    sims = (X[rows] * C[y[rows]]).sum(axis=1)
    typical = np.full(n_classes, np.nan)
    for c in range(n_classes):
        s = sims[y[rows] == c]
        if len(s):
            typical[c] = np.quantile(s, PHRASING_QUANTILE)
    return C, typical


def describe_groups(X: np.ndarray, texts: Sequence[str], ids: np.ndarray, members: np.ndarray,
                    group_of_members: np.ndarray, *, y: np.ndarray, classes: Sequence[str], n_examples: int = 3,
                    n_nearest: int = 3, n_keywords: int = 5) -> list[dict[str, Any]]:
    """One ``new_intents`` row per group.

    Parameters
    ----------
    X : float array, shape (n, dim), L2-normalised
    texts, ids : one per row of ``X``
    members : int array, shape (m,)
        Row numbers of the grouped candidates.
    group_of_members : int array, shape (m,)
        Their group (-1: none), as :func:`group_candidates` returns.
    y : int array, shape (n,)
        Class index per row (-1: unannotated); the existing intents' rows.
    classes : the intent names
    """
    from hl_debug.scoring.clusters import cluster_keywords

    groups = [g for g in np.unique(group_of_members) if g >= 0]
    if not groups:
        return []
    centroids, typical = intent_centroids(X, y, len(classes))
    cluster_ids = np.full(len(X), -1, dtype=np.int64)
    cluster_ids[members] = group_of_members
    keywords = cluster_keywords(list(texts), cluster_ids, top_n=n_keywords)
    out = []
    for g in groups:
        rows = members[group_of_members == g]
        centre = _normalise(X[rows].mean(axis=0))
        sims = centroids @ X[rows].mean(axis=0)  # the members' mean similarity to each intent's centroid
        sims[np.isnan(typical)] = -np.inf
        near = np.argsort(-sims, kind="stable")[:n_nearest]
        near = [c for c in near if np.isfinite(sims[c])]
        best = near[0] if near else None
        verdict = ("missing phrasing of " + classes[best]
                   if best is not None and sims[best] >= typical[best] else "new intent")
        order = np.argsort(-(X[rows] @ centre), kind="stable")[:n_examples]
        out.append({
            "group_id": int(g) + 1, "rank": int(g) + 1, "size": len(rows),
            "keywords": ", ".join(keywords.get(int(g), [])),
            "nearest_intents": "; ".join(f"{classes[c]} ({sims[c]:.2f})" for c in near),
            "examples": " | ".join(str(texts[int(r)]) for r in rows[order]),
            "verdict": verdict,
            "ids": json.dumps([int(ids[int(r)]) for r in rows]),
        })
    return out
