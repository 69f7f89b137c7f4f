"""Annotation queue: which unannotated utterances to label next, in order.

The order is the greedy maximiser of *weighted facility location* on the run's kNN graph
(:func:`coverage_graph`, :func:`rank_queue`): every row is covered by its most similar
labelled or already-queued row, and each pick is the unannotated row whose label would
raise the total weighted coverage most. The weight of covering a row is ``0.3 +`` the
model's uncertainty about it, times its :func:`density`, so dense, unlabelled, uncertain
regions come first and an outlier that resembles nothing (it covers only itself, and
little of that) is demoted. Two diversity terms keep consecutive picks apart: a pick
lowers the gain of its graph neighbours by ``1 − diversity × similarity``, and of the
candidates the model assigns to the same intent by ``group_decay`` per pick; a candidate
nearly duplicating an earlier pick (cosine ≥ ``duplicate_threshold``) goes to the end —
labelling one of them teaches the model the others. The order is one list for every
batch size; its top N is the greedy choice for N. ``benchmarks/queue_simulation.py``
measures it by simulated annotation against random, entropy and farthest-first orders.

:func:`uncertainty_from_probs` and :func:`coverage_scores` give the per-row figures the
queue shows (uncertainty; unlabelled share of the neighbours and the cluster).
"""

from __future__ import annotations

import heapq
from typing import Any

import numpy as np
from scipy import sparse

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


def density(similarities: Any) -> np.ndarray:
    """Typicality of each row: the mean cosine (clipped at 0) to its graph neighbours, (n,).

    High inside a dense region, low for an outlier; multiplying the queue's weights by it
    demotes rows that fit nothing (labelling them teaches the model about no other row).
    """
    sim = np.asarray(similarities, dtype=np.float64)
    if sim.ndim != 2:
        raise ValueError(f"similarities must have shape (n, k), got {sim.shape}")
    if sim.shape[1] == 0:
        return np.ones(len(sim))
    return np.clip(sim, 0.0, 1.0).mean(axis=1)


def coverage_graph(neighbors: Any, similarities: Any) -> sparse.csr_matrix:
    """The symmetric similarity graph the queue's coverage is measured on, (n, n) CSR.

    Entry ``(i, j)`` is the cosine of rows ``i`` and ``j`` (clipped to [0, 1]) when either
    lists the other among its nearest neighbours, the diagonal is 1 (a row covers itself).

    Parameters
    ----------
    neighbors, similarities : arrays, shape (n, k)
        The run's kNN graph: indices of each row's ``k`` nearest other rows and their cosines.
    """
    idx = np.asarray(neighbors, dtype=np.int64)
    sim = np.asarray(similarities, dtype=np.float64)
    if idx.ndim != 2 or idx.shape != sim.shape:
        raise ValueError(f"neighbors and similarities must have one shape (n, k); got {idx.shape}, {sim.shape}")
    n, k = idx.shape
    A = sparse.csr_matrix((np.clip(sim.ravel(), 0.0, 1.0), (np.repeat(np.arange(n), k), idx.ravel())),
                          shape=(n, n))
    A = A.maximum(A.T).maximum(sparse.identity(n, format="csr")).tocsr()  # similarities are <= 1
    A.sort_indices()
    return A


def _gains(A: sparse.csr_matrix, covered: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every row's marginal gain ``sum_i weights[i] * max(0, A[j, i] - covered[i])`` over row
    ``j``, and how many other rows it would cover better, (n,) each."""
    M = A.copy()
    M.data = np.clip(M.data - covered[M.indices], 0.0, None)
    better = M.copy()
    better.setdiag(0.0)
    M.data *= weights[M.indices]
    return np.asarray(M.sum(axis=1)).ravel(), np.diff((better > 1e-9).tocsr().indptr)


def rank_queue(graph: sparse.csr_matrix, *, candidates: Any, labeled: Any, weights: Any,
               diversity: float = 0.5, groups: Any = None, group_decay: float = 0.7,
               duplicate_threshold: float = 0.9,
               max_greedy: int = 2000) -> dict[str, np.ndarray]:
    """Order candidates so that every prefix of the queue covers the data best.

    Greedy maximisation of weighted facility location: a row is *covered* by the most
    similar labelled (or already queued) row in ``graph``; each pick is the candidate whose
    labelling would raise ``sum_i weights[i] * coverage[i]`` the most, times the two
    diversity factors. A pick in a dense, unlabelled, uncertain region gains most; an
    outlier covers only itself; a row in a labelled region, or next to an earlier pick,
    gains little. Every factor only shrinks as picks are made (facility location is
    monotone submodular), so lazy evaluation — a heap of stale upper bounds, re-evaluated
    when popped — gives the exact greedy order at a fraction of the cost.

    Parameters
    ----------
    graph : sparse matrix, shape (n, n)
        :func:`coverage_graph` of all rows.
    candidates : int array, shape (m,)
        Row numbers that may be queued (the unannotated rows).
    labeled : bool array, shape (n,)
        Rows already annotated (they count as covering their neighbours).
    weights : array, shape (n,), non-negative
        How much covering each row is worth (e.g. ``0.3 + uncertainty``).
    diversity : float in [0, 1]
        A candidate's gain is multiplied by ``1 - diversity * s``, ``s`` its highest graph
        similarity to a pick so far.
    groups : int array, shape (m,), optional
        A group per candidate (e.g. the model's predicted intent; -1: none) ...
    group_decay : float in (0, 1]
        ... whose gain is multiplied by ``group_decay`` per pick from its group, so the top
        spreads over intents.
    duplicate_threshold : float
        A candidate at least this similar to an earlier pick is its near-duplicate: it goes
        to the end (labelling one of them teaches the model the others).
    max_greedy : int
        Picks made greedily; the candidates left after that many follow by their gain at
        that point (which keeps ``score`` non-increasing).

    Returns
    -------
    dict of arrays, shape (m,) each, in queue order
        ``order`` (positions in ``candidates``), ``score`` (the pick's gain relative to the
        first pick's, non-increasing along the queue; 0 for near-duplicates of an earlier
        pick), ``duplicate_of`` (position of the earlier pick it nearly duplicates, -1 if none),
        ``covers`` (how many other rows its label would cover better than anything before it).
    """
    A = sparse.csr_matrix(graph)
    n = A.shape[0]
    cand = np.asarray(candidates, dtype=np.int64)
    labeled = np.asarray(labeled, dtype=bool)
    w = np.asarray(weights, dtype=np.float64)
    if A.shape != (n, n) or labeled.shape != (n,) or w.shape != (n,) or cand.ndim != 1:
        raise ValueError(f"graph must be (n, n) with labeled and weights (n,) and candidates 1-d; "
                         f"got {A.shape}, {labeled.shape}, {w.shape}, {cand.shape}")
    if len(w) and (np.isnan(w).any() or w.min() < 0):
        raise ValueError("weights must be non-negative without NaN")
    if len(cand) and (cand.min() < 0 or cand.max() >= n or labeled[cand].any()):
        raise ValueError("candidates must be row numbers of unlabelled rows")
    if not (0 <= diversity <= 1 and 0 < group_decay <= 1):
        raise ValueError(f"diversity must be in [0, 1] and group_decay in (0, 1]; got {diversity}, {group_decay}")
    m = len(cand)
    position = np.full(n, -1, dtype=np.int64)
    position[cand] = np.arange(m)
    # covered[i]: similarity of row i to its most similar labelled row in the graph
    covered = (A @ sparse.diags(labeled.astype(np.float64))).max(axis=1).toarray().ravel()
    covered[labeled] = 1.0
    indptr, indices, data = A.indptr, A.indices, A.data

    group = np.asarray(groups, dtype=np.int64) if groups is not None else np.full(m, -1, dtype=np.int64)
    if group.shape != (m,):
        raise ValueError(f"groups must have one entry per candidate ({m}), got shape {group.shape}")
    decay = np.ones(m)  # group_decay ** (picks so far from the candidate's group)
    near_pick = np.zeros(n)  # each row's highest graph similarity to a pick so far

    def gain(j: int) -> float:
        cols = indices[indptr[j]:indptr[j + 1]]
        fl = float((w[cols] * np.clip(data[indptr[j]:indptr[j + 1]] - covered[cols], 0.0, None)).sum())
        return fl * (1.0 - diversity * near_pick[j]) * decay[position[j]]

    start = _gains(A, covered, w)[0][cand] if m else np.zeros(0)
    heap = [(-float(g), int(p)) for p, g in enumerate(start)]
    heapq.heapify(heap)
    dup_of = np.full(m, -1, dtype=np.int64)
    order: list[int] = []
    gains: list[float] = []
    covers: list[int] = []
    dups: list[int] = []
    picked = np.zeros(m, dtype=bool)
    while heap and len(order) < max_greedy:
        _, p = heapq.heappop(heap)
        if dup_of[p] >= 0:
            continue
        j = int(cand[p])
        g = gain(j)
        if heap and g < -heap[0][0] - 1e-12:  # stale bound: re-insert with the current gain
            heapq.heappush(heap, (-g, p))
            continue
        order.append(p)
        picked[p] = True
        gains.append(g)
        cols, sims = indices[indptr[j]:indptr[j + 1]], data[indptr[j]:indptr[j + 1]]
        covers.append(int(((sims > covered[cols] + 1e-9) & (cols != j)).sum()))  # before covering
        covered[cols] = np.maximum(covered[cols], sims)
        if group[p] >= 0:
            decay[group == group[p]] *= group_decay
        other = cols != j
        near_pick[cols[other]] = np.maximum(near_pick[cols[other]], sims[other])
        near = position[cols[(sims >= duplicate_threshold) & other]]
        near = near[(near >= 0) & (dup_of[near] < 0) & ~picked[np.maximum(near, 0)]]
        dup_of[near] = p
        dups.extend(int(q) for q in near)
    rest = np.array(sorted({p for _, p in heap if dup_of[p] < 0}), dtype=np.int64)
    if len(rest):
        now, better = (a[cand[rest]] for a in _gains(A, covered, w))
        now = now * (1.0 - diversity * near_pick[cand[rest]]) * decay[rest]
        keep = np.argsort(-now, kind="stable")
        order.extend(int(p) for p in rest[keep])
        gains.extend(np.minimum(now[keep], gains[-1] if gains else np.inf).tolist())
        covers.extend(int(c) for c in better[keep])
    order.extend(dups)
    gains.extend([0.0] * len(dups))
    covers.extend([0] * len(dups))
    score = np.asarray(gains, dtype=np.float64)
    if len(score) and score[0] > 0:
        score = score / score[0]
    order_arr = np.asarray(order, dtype=np.int64)
    return {"order": order_arr, "score": score, "duplicate_of": dup_of[order_arr],
            "covers": np.asarray(covers, dtype=np.int64)}
