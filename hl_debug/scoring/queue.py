"""Annotation queue: which unannotated utterances to label next, in order.

Each candidate's priority is the geometric mean of

* **uncertainty** — how unsure the model is (normalised entropy of its distribution, or
  1 − margin), and
* **coverage** — how little annotation its surroundings have: the unlabelled share of
  its nearest neighbours, averaged with its cluster's unlabelled share when clusters
  exist (so unannotated regions and thinly labelled clusters come first).

The order is then built greedily for diversity (maximal marginal relevance): each pick
lowers the priority of rows similar to it and of rows in its cluster, and rows that are
near-duplicates of an earlier pick (cosine ≥ ``duplicate_threshold``) go to the end —
labelling one of them teaches the model the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hl_debug.neighbors import knn

UNCERTAINTY_METHODS = ("entropy", "margin")


def uncertainty_from_probs(probs: Any, *, method: str = "entropy") -> np.ndarray:
    """Uncertainty in [0, 1] of each row's class distribution, shape ``(n,)``.

    ``entropy``: entropy divided by log(n_classes); ``margin``: 1 − (top1 − top2).
    """
    if method not in UNCERTAINTY_METHODS:
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(UNCERTAINTY_METHODS)}")
    P = np.asarray(probs, dtype=np.float64)
    if P.ndim != 2 or P.shape[1] < 2:
        raise ValueError(f"probs must have shape (n_rows, n_classes >= 2), got {P.shape}")
    if method == "entropy":
        return -(P * np.log(np.clip(P, 1e-12, None))).sum(axis=1) / np.log(P.shape[1])
    top = np.sort(P, axis=1)[:, -2:]
    return 1.0 - (top[:, 1] - top[:, 0])


def coverage_scores(X: Any, labeled: Any, *, k: int = 10, cluster_ids: Any = None,
                    neighbors: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Unlabelled share around each row (higher = less covered by annotations).

    Parameters
    ----------
    X : array, shape (n, dim)
        L2-normalised embeddings of *all* rows.
    labeled : bool array, shape (n,)
    k : int
        Neighbours considered (self excluded).
    cluster_ids : int array, shape (n,), optional
        Cluster per row (-1 noise); a cluster's unlabelled share is averaged in.
    neighbors : int array, shape (n, >= k), optional
        The run's kNN indices of ``X``, most similar first (computed here when not given).

    Returns
    -------
    coverage : array, shape (n,)
        In [0, 1].
    knn_labeled : array, shape (n,)
        Number of labelled rows among the ``k`` neighbours.
    """
    X = np.asarray(X, dtype=np.float32)
    labeled = np.asarray(labeled, dtype=bool)
    n = len(X)
    if X.ndim != 2 or labeled.shape != (n,):
        raise ValueError(f"X must be (n, dim) and labeled (n,); got {X.shape} and {labeled.shape}")
    k = min(k, n - 1)
    if k < 1:
        return np.ones(n), np.zeros(n, dtype=np.int64)
    if neighbors is None:
        idx, _ = knn(X, k)
    else:
        idx = np.asarray(neighbors)[:, :k]
        if idx.shape != (n, k):
            raise ValueError(f"neighbors must have shape ({n}, >= {k}), got {np.asarray(neighbors).shape}")
    knn_labeled = labeled[idx].sum(axis=1)
    coverage = 1.0 - knn_labeled / k
    if cluster_ids is not None:
        cluster_ids = np.asarray(cluster_ids)
        if cluster_ids.shape != (n,):
            raise ValueError(f"cluster_ids must have shape ({n},), got {cluster_ids.shape}")
        for c in np.unique(cluster_ids):
            if c == -1:
                continue
            members = cluster_ids == c
            coverage[members] = 0.5 * coverage[members] + 0.5 * (1.0 - labeled[members].mean())
    return coverage, knn_labeled


def rank_queue(X: Any, *, uncertainty: Any, coverage: Any, cluster_ids: Any = None,
               similarity_penalty: float = 0.5, cluster_decay: float = 0.85,
               duplicate_threshold: float = 0.9, max_greedy: int = 2000) -> dict[str, np.ndarray]:
    """Order candidates by uncertainty × coverage with diversity.

    Parameters
    ----------
    X : array, shape (m, dim)
        L2-normalised embeddings of the candidates (unannotated rows).
    uncertainty, coverage : arrays, shape (m,), in [0, 1]
    cluster_ids : int array, shape (m,), optional
    similarity_penalty : float
        Priority is multiplied by ``1 - similarity_penalty * max_sim_to_picked``.
    cluster_decay : float
        ... and by ``cluster_decay ** picks_from_same_cluster``.
    duplicate_threshold : float
        Candidates at least this similar to an earlier pick are moved to the end.
    max_greedy : int
        Picks made one at a time (each O(m)); the candidates left after that many are
        appended by their penalised priority at that point, which keeps the order
        non-increasing and the cost O(max_greedy × m) on large pools.

    Returns
    -------
    dict of arrays, shape (m,) each, in queue order
        ``order`` (candidate positions), ``priority`` (√(uncertainty × coverage), before
        diversity), ``score`` (the diversity-adjusted priority when picked — non-increasing
        along the queue; 0 for near-duplicates of an earlier pick), ``duplicate_of``
        (position of the earlier pick it nearly duplicates, -1 if none).
    """
    X = np.asarray(X, dtype=np.float32)
    u = np.asarray(uncertainty, dtype=np.float64)
    c = np.asarray(coverage, dtype=np.float64)
    m = len(X)
    if X.ndim != 2 or u.shape != (m,) or c.shape != (m,):
        raise ValueError(f"X must be (m, dim) with uncertainty and coverage (m,); got {X.shape}, {u.shape}, {c.shape}")
    for name, v in (("uncertainty", u), ("coverage", c)):
        if m and (np.isnan(v).any() or v.min() < 0 or v.max() > 1):
            raise ValueError(f"{name} must lie in [0, 1] without NaN")
    clusters = np.asarray(cluster_ids) if cluster_ids is not None else np.full(m, -1)
    priority = np.sqrt(u * c)
    max_sim = np.zeros(m)
    dup_of = np.full(m, -1, dtype=np.int64)
    decay = np.ones(m)  # cluster_decay ** (picks so far from the row's cluster)
    free = np.ones(m, dtype=bool)
    order, scores = [], []

    def effective() -> np.ndarray:
        eff = priority * (1.0 - similarity_penalty * np.clip(max_sim, 0, 1)) * decay
        eff[dup_of >= 0] -= 2.0  # near-duplicates of a pick: after every other candidate
        eff[~free] = -np.inf
        return eff

    for _ in range(min(m, max_greedy)):
        eff = effective()
        i = int(np.argmax(eff))
        order.append(i)
        scores.append(max(float(eff[i]), 0.0))  # non-increasing: penalties only grow
        free[i] = False
        sim = X @ X[i]
        newly = free & (sim >= duplicate_threshold) & (dup_of < 0)
        dup_of[newly] = i
        max_sim = np.maximum(max_sim, sim)
        if clusters[i] != -1:
            decay[clusters == clusters[i]] *= cluster_decay
    if len(order) < m:
        eff = effective()
        rest = np.flatnonzero(free)
        rest = rest[np.argsort(-eff[rest], kind="stable")]
        order.extend(int(i) for i in rest)
        scores.extend(np.maximum(eff[rest], 0.0).tolist())
    order_arr = np.array(order, dtype=np.int64)
    return {"order": order_arr, "priority": priority[order_arr], "score": np.array(scores),
            "duplicate_of": dup_of[order_arr]}


def queue_reason(*, predicted: str | None, uncertainty: float, runner_up: str | None, knn_labeled: int, k: int,
                 cluster_id: int | None = None, cluster_labeled_share: float | None = None,
                 duplicate_of_text: str | None = None) -> str:
    """Short human text saying why a row is where it is in the queue."""
    parts = []
    if predicted is None:
        parts.append("no model prediction")
    elif uncertainty >= 0.5:
        parts.append(f"model unsure ({predicted} vs {runner_up})" if runner_up else f"model unsure ({predicted})")
    else:
        parts.append(f"model fairly sure: {predicted}")
    if knn_labeled == 0:
        parts.append(f"unannotated region (0/{k} neighbours labelled)")
    else:
        parts.append(f"{knn_labeled}/{k} neighbours labelled")
    if cluster_id is not None and cluster_id != -1 and cluster_labeled_share is not None:
        parts.append(f"cluster {cluster_id} {cluster_labeled_share:.0%} labelled")
    if duplicate_of_text:
        parts.append(f"near-duplicate of queued '{duplicate_of_text[:40]}'")
    return "; ".join(parts)



def queue_rows(ranked: dict[str, np.ndarray], *, candidates: np.ndarray, ids: Sequence[int] | np.ndarray, texts: Sequence[str],
               probs: np.ndarray, uncertainty: np.ndarray, coverage: np.ndarray, knn_labeled: np.ndarray,
               classes: Sequence[str], k: int, predicted: Sequence[str | None] | None = None,
               cluster_ids: np.ndarray | None = None, annotated: np.ndarray | None = None) -> list[dict[str, Any]]:
    """One row per candidate in :func:`rank_queue`'s order, ranked from 1, with its reason.

    ``candidates`` (m,) are the candidates' row numbers among all n rows; ``ids``, ``texts``,
    ``coverage``, ``knn_labeled``, ``predicted`` (the active endpoint's labels, None: none),
    ``cluster_ids`` and ``annotated`` are per row (n); ``probs`` (m, n_classes) and
    ``uncertainty`` (m,) per candidate. A candidate without an endpoint label shows the
    classifier's most likely class.
    """
    share: dict[int, float] = {}
    if cluster_ids is not None and annotated is not None:
        for c in np.unique(cluster_ids):
            share[int(c)] = float(annotated[cluster_ids == c].mean())
    rows = []
    for rank, (pos, score, dup) in enumerate(zip(ranked["order"], ranked["score"], ranked["duplicate_of"]), 1):
        i = candidates[pos]
        ranked_classes = [classes[c] for c in np.argsort(-probs[pos])]
        ep_label = predicted[i] if predicted is not None else None
        label = ep_label if isinstance(ep_label, str) else ranked_classes[0]
        cl = int(cluster_ids[i]) if cluster_ids is not None else None
        rows.append({
            "id": int(ids[i]), "rank": rank, "score": float(score), "predicted_label": label,
            "uncertainty": float(uncertainty[pos]), "coverage": float(coverage[i]), "cluster_id": cl,
            "near_duplicate_of": int(ids[candidates[dup]]) if dup >= 0 else None,
            "reason": queue_reason(predicted=label, uncertainty=float(uncertainty[pos]),
                                   runner_up=next(c for c in ranked_classes if c != label),
                                   knn_labeled=int(knn_labeled[i]), k=k, cluster_id=cl,
                                   cluster_labeled_share=share.get(cl) if cl is not None else None,
                                   duplicate_of_text=texts[candidates[dup]] if dup >= 0 else None),
        })
    return rows
