"""Candidate new intents: the out-of-scope candidates grouped, described and compared with the
existing intents (pure functions, arrays in, rows out).

:func:`group_candidates` clusters the candidates' vectors (average linkage on cosine
distances; a group needs ``min_size`` members, the rest are in no group), cut where existing
intents split (:func:`intent_spread`: midway between how spread an intent is and how far apart
neighbouring intents are). Neighbouring unknown intents merge under that cut, so a group much
bigger than a typical intent (``SPLIT_SIZE``) is cut again where :func:`calibrated_cut` says
clusters of existing intents stay pure: the same clustering is run on the annotated rows of
random sets of intents, as many as the candidates would fill (a held-out-intent simulation,
like the score's calibration), and the cut is the largest distance at which those clusters are
still ``GROUP_PURITY`` one intent on average. :func:`describe_groups` gives
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
#: quantile of the intent's own rows is that intent's missing phrasing. The median: with the
#: lower quartile a whole unknown intent next to a known one (split from its neighbour by the
#: second cut) passed as the known one's phrasing (banking77, 10 held out, seed 2: 91% of the
#: grouped rows judged right vs 99.8% with the median; ``benchmarks/RESULTS.md``).
PHRASING_QUANTILE = 0.5
#: The mean purity (share of each cluster's majority intent, size-weighted) that clustering the
#: annotated rows of random sets of existing intents must keep at :func:`calibrated_cut`.
GROUP_PURITY = 0.9
#: A group of more than this many typical intents' rows (:func:`typical_intent_size`) is cut
#: again at :func:`calibrated_cut`; smaller ones keep the coarser :func:`intent_spread` cut
#: (cutting every group finer splits single intents and costs recall).
SPLIT_SIZE = 1.3
#: Candidates grouped by average linkage at once (it holds every pairwise distance: 8,000
#: rows take 0.5 GB); above it the groups come from a sample and the rest join them
#: (:func:`group_candidates`).
MAX_GROUP_ROWS = 8_000
#: Distances the cut is chosen from.
_CUTS = np.round(np.arange(0.02, 1.0, 0.005), 3)


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


def _purity_curve(Z: np.ndarray, labels: np.ndarray, cuts: np.ndarray, min_size: int) -> np.ndarray:
    """Purity of the average-linkage clusters of ``Z`` (cosine) with at least ``min_size``
    members, against ``labels``, at each distance in ``cuts`` (1.0 while there are none).

    One pass over the merges: each merge updates its cluster's per-label counts and the running
    sums of majority counts and sizes of the clusters that are big enough.
    """
    n = len(Z)
    merges = _linkage(Z)
    counts = np.zeros((2 * n - 1, int(labels.max()) + 1), dtype=np.int64)
    counts[np.arange(n), labels] = 1
    size = np.ones(2 * n - 1, dtype=np.int64)
    hits = total = 0
    purity = np.ones(n - 1)
    for i, (a, b) in enumerate(merges[:, :2].astype(np.int64)):
        for c in (a, b):
            if size[c] >= min_size:
                hits -= counts[c].max()
                total -= size[c]
        counts[n + i] = counts[a] + counts[b]
        size[n + i] = size[a] + size[b]
        if size[n + i] >= min_size:
            hits += counts[n + i].max()
            total += size[n + i]
        purity[i] = hits / total if total else 1.0
    done = np.searchsorted(merges[:, 2], cuts, side="left")  # merges below each cut
    return np.where(done == 0, 1.0, purity[np.maximum(done - 1, 0)])


def calibrated_cut(X: np.ndarray, y: np.ndarray, *, n_candidates: int, ceiling: float, min_size: int = 3,
                   target_purity: float = GROUP_PURITY, per_intent: int = 50, n_repeats: int = 12,
                   random_state: int = 0) -> float:
    """The average-linkage cut for ``n_candidates`` candidates: the largest distance (at most
    ``ceiling``) at which clustering the annotated rows of random sets of existing intents keeps
    a mean purity of ``target_purity`` at every cut up to it.

    Each of ``n_repeats`` draws takes as many intents as the candidates would fill (their count
    over the median intent's annotated rows; at least 2, at most half the intents) and up to
    ``per_intent`` of each one's rows (average linkage compares mean distances, so a sample
    keeps them). ``ceiling`` (usually :func:`intent_spread`) is returned when fewer than four
    intents have ``min_size`` rows.
    """
    classes, counts = np.unique(y[y >= 0], return_counts=True)
    keep = counts >= min_size
    classes, counts = classes[keep], counts[keep]
    if len(classes) < 4:
        return float(ceiling)
    k = int(np.clip(round(n_candidates / np.median(counts)), 2, len(classes) // 2))
    rng = np.random.default_rng(random_state)
    Xf = np.asarray(X, dtype=np.float64)
    cuts = _CUTS[_CUTS <= ceiling]
    if not len(cuts):
        return float(ceiling)
    curves = []
    for _ in range(n_repeats):
        picked = rng.choice(len(classes), k, replace=False)
        rows = np.concatenate([rng.choice(np.flatnonzero(y == classes[c]), min(per_intent, counts[c]), replace=False)
                               for c in picked])
        curves.append(_purity_curve(Xf[rows], np.searchsorted(classes, y[rows]), cuts, min_size))
    below = np.flatnonzero(np.mean(curves, axis=0) < target_purity)
    if not len(below):
        return float(ceiling)
    return float(cuts[max(below[0] - 1, 0)])


def _linkage(X: np.ndarray) -> np.ndarray:
    """Average-linkage merges of the rows of ``X`` on cosine distances (a zero row is 1 from all)."""
    from scipy.cluster.hierarchy import linkage
    from scipy.spatial.distance import squareform

    Xn = _normalise(np.asarray(X, dtype=np.float64))
    D = np.clip(1.0 - Xn @ Xn.T, 0.0, 2.0)
    np.fill_diagonal(D, 0.0)
    return linkage(squareform(D, checks=False), method="average")


def typical_intent_size(y: np.ndarray, n_candidates: int) -> float:
    """Rows a typical intent has in the traffic: the median intent's annotated rows over the
    annotated share of the rows that are not candidates (the in-scope traffic)."""
    annotated = y >= 0
    if not annotated.any():
        return float("inf")
    median = float(np.median(np.unique(y[annotated], return_counts=True)[1]))
    return median * max(len(y) - n_candidates, int(annotated.sum())) / int(annotated.sum())


def group_candidates(X: np.ndarray, *, threshold: float, min_size: int = 3, fine_threshold: float | None = None,
                     split_size: float | None = None, max_rows: int | None = MAX_GROUP_ROWS,
                     random_state: int = 0) -> np.ndarray:
    """Group id per row of ``X`` (0, 1, ... largest group first; -1: in no group).

    Average-linkage agglomerative clustering on cosine distances, cut where the mean distance
    between two groups' members exceeds ``threshold`` (:func:`intent_spread`: a group is as
    tight as an existing intent, apart as two of them are). A group of more than ``split_size``
    rows (``SPLIT_SIZE`` typical intents: likely neighbouring intents merged) is cut again at
    ``fine_threshold`` (:func:`calibrated_cut`: where clusters of existing intents stay pure);
    the two cuts of one dendrogram nest, so its pieces stay inside it. Groups under
    ``min_size`` members are dropped.

    Average linkage holds all pairwise distances (``n**2`` floats), so above ``max_rows``
    rows the groups are found on a seeded sample of ``max_rows`` (sizes scaled to it) and
    every other row joins the group it is most similar to on average — average linkage's own
    criterion — when that mean distance is within ``threshold``.
    """
    n = len(X)
    labels = np.full(n, -1, dtype=np.int64)
    if n < max(min_size, 2):
        return labels
    if max_rows is not None and n > max_rows:
        return _group_sample(X, threshold=threshold, min_size=min_size, fine_threshold=fine_threshold,
                             split_size=split_size, max_rows=max_rows, random_state=random_state)
    from scipy.cluster.hierarchy import fcluster

    merges = _linkage(X)
    raw = fcluster(merges, threshold, criterion="distance")
    if fine_threshold is not None and split_size is not None and fine_threshold < threshold:
        big = np.bincount(raw)[raw] > split_size
        raw = np.where(big, fcluster(merges, fine_threshold, criterion="distance") + raw.max(), raw)
    found = [g for g in np.unique(raw) if np.sum(raw == g) >= min_size]
    found.sort(key=lambda g: (-int(np.sum(raw == g)), int(np.flatnonzero(raw == g)[0])))
    for new, g in enumerate(found):
        labels[raw == g] = new
    return labels


def _group_sample(X: np.ndarray, *, threshold: float, min_size: int, fine_threshold: float | None,
                  split_size: float | None, max_rows: int, random_state: int) -> np.ndarray:
    """:func:`group_candidates` on a sample of ``max_rows`` rows, the rest placed by mean similarity."""
    n = len(X)
    frac = max_rows / n
    sample = np.sort(np.random.default_rng(random_state).choice(n, max_rows, replace=False))
    found = group_candidates(X[sample], threshold=threshold, min_size=max(2, round(min_size * frac)),
                             fine_threshold=fine_threshold, split_size=None if split_size is None else split_size * frac,
                             max_rows=None)
    raw = np.full(n, -1, dtype=np.int64)
    raw[sample] = found
    if found.max(initial=-1) < 0:
        return raw
    Xn = _normalise(np.asarray(X, dtype=np.float64))
    centres = np.stack([Xn[sample[found == g]].mean(axis=0) for g in range(found.max() + 1)])
    rest = np.setdiff1d(np.arange(n), sample)
    for start in range(0, len(rest), 65_536):
        part = rest[start:start + 65_536]
        sim = Xn[part] @ centres.T  # the mean cosine similarity to each group's sampled members
        best = sim.argmax(axis=1)
        raw[part] = np.where(1.0 - sim[np.arange(len(part)), best] <= threshold, best, -1)
    labels = np.full(n, -1, dtype=np.int64)
    sizes = np.bincount(raw[raw >= 0], minlength=found.max() + 1)
    kept = [g for g in range(len(sizes)) if sizes[g] >= min_size]
    kept.sort(key=lambda g: (-int(sizes[g]), int(np.flatnonzero(raw == g)[0])))
    for new, g in enumerate(kept):
        labels[raw == g] = new
    return labels


def intent_centroids(X: np.ndarray, y: np.ndarray, n_classes: int,
                     quantile: float = PHRASING_QUANTILE) -> tuple[np.ndarray, np.ndarray]:
    """Normalised centroid per intent, (C, dim), and the ``quantile`` of its own rows' cosine
    similarity to it, (C,) (NaN for an intent without rows)."""
    C = np.zeros((n_classes, X.shape[1]))
    rows = y >= 0
    np.add.at(C, y[rows], X[rows])
    C = _normalise(C)
    sims = (X[rows] * C[y[rows]]).sum(axis=1)
    typical = np.full(n_classes, np.nan)
    for c in range(n_classes):
        s = sims[y[rows] == c]
        if len(s):
            typical[c] = np.quantile(s, quantile)
    return C, typical


def describe_groups(X: np.ndarray, texts: Sequence[str], ids: np.ndarray, members: np.ndarray,
                    group_of_members: np.ndarray, *, y: np.ndarray, classes: Sequence[str], n_examples: int = 3,
                    n_nearest: int = 3, n_keywords: int = 5,
                    phrasing_quantile: float = PHRASING_QUANTILE) -> list[dict[str, Any]]:
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
    phrasing_quantile : float
        The verdict's bar (``PHRASING_QUANTILE``).
    """
    from hl_debug.scoring.clusters import cluster_keywords

    groups = [g for g in np.unique(group_of_members) if g >= 0]
    if not groups:
        return []
    centroids, typical = intent_centroids(X, y, len(classes), phrasing_quantile)
    cluster_ids = np.full(len(X), -1, dtype=np.int64)
    cluster_ids[members] = group_of_members
    keywords = cluster_keywords(list(texts), cluster_ids, top_n=n_keywords)
    out = []
    for g in groups:
        rows = members[group_of_members == g]
        centre = _normalise(X[rows].mean(axis=0))
        sims = centroids @ X[rows].mean(axis=0)  # the members' mean similarity to each intent's centroid
        sims[np.isnan(typical)] = -np.inf
        near = [int(c) for c in np.argsort(-sims, kind="stable")[:n_nearest] if np.isfinite(sims[c])]
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
