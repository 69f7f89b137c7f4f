"""Near-duplicate groups: conflicting labels and train/evaluation split leakage.

Two utterances are near-duplicates when the cosine similarity of their embeddings is at
least ``threshold``; groups are the connected components of that graph. A group is
reported as

* ``conflicting_labels`` when its annotated members carry more than one intent — at
  least one annotation is inconsistent;
* ``split_leakage`` when it has members in ``training`` and in ``validation`` or
  ``testing`` — the evaluation scores are inflated by near-copies of training rows.

A group can be both; it is then listed once per kind.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from hl_debug.domain import EVAL_SPLITS, TRAINING
from hl_debug.neighbors import MIN_K, knn

KINDS = ("conflicting_labels", "split_leakage")


def near_duplicate_components(X: Any, *, threshold: float = 0.95,
                              neighbors: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Connected components of the "cosine similarity >= threshold" graph.

    Parameters
    ----------
    X : array, shape (n, dim)
        L2-normalised embeddings.
    threshold : float in (0, 1]
    neighbors : (indices, similarities), optional
        The run's kNN graph of ``X``, shape (n, >= 1) each, most similar first (computed
        here when not given; a group larger than its width + 1 stays connected through its
        members' own lists).

    Returns
    -------
    component : int array, shape (n,)
        Component id of each row (singletons get their own id).
    best_similarity : float array, shape (n,)
        Highest similarity to another row of its component (NaN for singletons).
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-D array (n_rows, dim), got shape {X.shape}")
    n = len(X)
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    if n == 1:
        return np.zeros(1, dtype=np.int64), np.full(1, np.nan)
    # Edges from the shared kNN (exact duplicates included): a group larger than MIN_K + 1
    # stays connected through its members' own neighbour lists.
    if neighbors is None:
        neighbors = knn(X, min(n - 1, MIN_K))
    idx, sim = (np.asarray(a) for a in neighbors)
    if idx.shape[0] != n or sim.shape != idx.shape:
        raise ValueError(f"neighbors must be two arrays of shape (n_rows={n}, k), got {idx.shape} and {sim.shape}")
    r, pos = np.nonzero(sim >= threshold - 1e-6)
    c, s_ = idx[r, pos], sim[r, pos]
    adj = csr_matrix((np.ones(len(r)), (r, c)), shape=(n, n))
    _, component = connected_components(adj, directed=False)
    best = np.full(n, np.nan)
    np.fmax.at(best, r, s_.astype(np.float64))
    return component.astype(np.int64), np.clip(best, -1.0, 1.0)


def duplicate_groups(X: Any, *, labels: Sequence[str | None], usages: Sequence[str | None],
                     threshold: float = 0.95,
                     neighbors: tuple[np.ndarray, np.ndarray] | None = None) -> list[dict[str, Any]]:
    """Near-duplicate groups with conflicting labels or crossing splits.

    Parameters
    ----------
    X : array, shape (n, dim)
        L2-normalised embeddings.
    labels : sequence of str or None, length n
        Given intent (None when unannotated).
    usages : sequence of str or None, length n
        ``training`` / ``validation`` / ``testing`` / None.
    threshold : float
        Cosine similarity at or above which two rows are near-duplicates.
    neighbors : (indices, similarities), optional
        The run's kNN graph (see :func:`near_duplicate_components`).

    Returns
    -------
    list of dict
        One dict per (group, kind): ``kind``, ``members`` (row positions), ``similarity``
        (per member, its best similarity inside the group). Sorted by kind, then size
        descending; only groups of two or more rows.
    """
    n = len(X)
    if len(labels) != n or len(usages) != n:
        raise ValueError(f"labels ({len(labels)}) and usages ({len(usages)}) must have one entry per row of X ({n})")
    # Missing values may arrive as None or as pandas' NaN; only strings count.
    labels = [v if isinstance(v, str) else None for v in labels]
    usages = [v if isinstance(v, str) else None for v in usages]
    component, best = near_duplicate_components(X, threshold=threshold, neighbors=neighbors)
    groups: list[dict[str, Any]] = []
    order = np.argsort(component, kind="stable")
    bounds = np.flatnonzero(np.diff(component[order])) + 1
    for members in np.split(order, bounds):
        if len(members) < 2:
            continue
        intents = {labels[i] for i in members if labels[i] is not None}
        splits = {usages[i] for i in members if usages[i] is not None}
        kinds = []
        if len(intents) > 1:
            kinds.append("conflicting_labels")
        if TRAINING in splits and splits & set(EVAL_SPLITS):
            kinds.append("split_leakage")
        for kind in kinds:
            groups.append({"kind": kind, "members": [int(i) for i in sorted(members)],
                           "similarity": [float(best[i]) for i in sorted(members)]})
    groups.sort(key=lambda g: (KINDS.index(g["kind"]), -len(g["members"]), g["members"][0]))
    return groups


def group_rows(groups: Sequence[dict[str, Any]], *, ids: Sequence[int] | np.ndarray, labels: Sequence[str | None],
               usages: Sequence[str | None]) -> list[dict[str, Any]]:
    """One row per member of each of :func:`duplicate_groups`' groups: ``group_id`` (from 1,
    in the groups' order), ``id``, ``kind``, ``similarity``, ``intent``, ``usage``."""
    return [{"group_id": g, "id": int(ids[m]), "kind": grp["kind"], "similarity": s, "intent": labels[m],
             "usage": usages[m]}
            for g, grp in enumerate(groups, 1) for m, s in zip(grp["members"], grp["similarity"])]
