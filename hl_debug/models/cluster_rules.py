"""The size rules of the map's HDBSCAN clusters, and the split that keeps intents apart.

Two ideas, both measured on the banking77 benchmark (77 overlapping intents, 13k rows) and
the grown exports (``benchmarks/clusters.py``, ``benchmarks/RESULTS.md`` "Clusters that
respect intents"):

* **Sub-topic-sized clusters at every size.** ``min_cluster_size`` stops growing at 16 (the
  bundled export's value): a fine-grained intent has ~170 rows in a 13k-row export, and a
  minimum that grows with the export (25 at 13k, 41 at 100k before) lets HDBSCAN's excess-of-
  mass selection fuse whole groups of intents. ``cluster_selection_epsilon`` still rises
  with ``log10(n)`` beyond 2,500 rows (to 0.2 from 25,000) so that the seams of a large
  export's regions are not thrown out as noise.
* **Merge only what does not mix intents.** Epsilon merges the pieces of a region whatever
  they hold. :func:`split_mixed_clusters` undoes a merge where it fused more than
  ``max_labels`` annotated intents (each above 10% of the cluster's annotated rows): such a
  cluster is replaced by the clusters HDBSCAN finds inside it without epsilon. HDBSCAN's own
  clusters can mix intents too (short "topping up" questions of five intents; recombined
  texts): :func:`cut_mixed_clusters` replaces every cluster still mixing them by its parts
  down the condensed tree (child clusters, else a leaf's dense core, else noise). The labels
  only decide *where the hierarchy is cut*; no row moves towards its own label, so a
  flipped row stays among the rows it reads like (where it is a minority-label suspect).

Pure functions and a read-only view of the condensed tree (arrays in, arrays out);
:class:`~hl_debug.models.map.MapAnalyzer` applies them.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Sequence

import numpy as np

#: HDBSCAN's label of noise points.
NOISE = -1
#: The largest default ``min_cluster_size`` (the bundled export's, 2,327 rows).
MAX_DEFAULT_MIN_CLUSTER_SIZE = 16
#: Share of a cluster's annotated rows above which a label counts as one the cluster holds.
MIXED_LABEL_SHARE = 0.10


def default_min_cluster_size(n: int) -> int:
    """HDBSCAN ``min_cluster_size`` for ``n`` rows: ``min(sqrt(n) / 3, 16)``, at least 5.

    ``sqrt(n) / 3`` up to the bundled export's size (16 at 2,327 rows, tuned there:
    clusters small enough to split an intent into its sub-topics, where mislabels stand out,
    and large enough to read), then constant: a sub-topic does not get bigger because the
    export holds more intents. The earlier rule kept growing (``2.3 * n ** 0.25``: 25 at
    13k rows, 41 at 100k) and, with epsilon, fused up to 33 intents into one cluster.
    """
    n = max(n, 1)
    size = min(math.sqrt(n) / 3, MAX_DEFAULT_MIN_CLUSTER_SIZE)
    return max(5, min(round(size), max(n // 2, 2)))


def default_min_samples(min_cluster_size: int) -> int:
    """HDBSCAN ``min_samples``: a third of ``min_cluster_size`` (at least 2); smaller means less noise."""
    return max(2, min_cluster_size // 3)


def default_cluster_selection_epsilon(n: int) -> float:
    """HDBSCAN ``cluster_selection_epsilon``: 0 up to 2,500 rows, rising with ``log10(n)`` to 0.2 at 25,000.

    In units of the clustering projection (UMAP, ``min_dist`` 0, spread 1). Clusters that
    split below this distance are kept whole, so on large exports the rows along the seams
    of one region are not thrown out as noise (0.14 at 13k rows, 0.18 at 20k). 0 on small
    exports keeps their clusters exactly as before. Merges that would mix intents are undone
    by :func:`split_mixed_clusters`.
    """
    return round(0.2 * min(max(math.log10(max(n, 1) / 2500), 0.0), 1.0), 4)


def mixed_label_count(labels: Sequence[str | None], *, share: float = MIXED_LABEL_SHARE) -> tuple[int, int]:
    """``(labels above share of the annotated rows, annotated rows)`` of one group of rows."""
    counts = Counter(x for x in labels if x)
    total = sum(counts.values())
    return (sum(v / total > share for v in counts.values()) if total else 0), total


def split_mixed_clusters(merged: np.ndarray, fine: np.ndarray, labels: Sequence[str | None], *,
                         max_labels: int = 3, share: float = MIXED_LABEL_SHARE,
                         min_annotated: int = 5) -> tuple[np.ndarray, list[int]]:
    """Replace the clusters of ``merged`` that mix too many labels by the ``fine`` clusters inside them.

    Parameters
    ----------
    merged : int array, shape (n,)
        HDBSCAN labels with ``cluster_selection_epsilon`` > 0 (-1 = noise).
    fine : int array, shape (n,)
        HDBSCAN labels of the same tree without epsilon.
    labels : sequence, shape (n,)
        Annotated intent per row, None (or "") when unannotated.
    max_labels : int
        A merged cluster in which more than this many labels each hold more than ``share``
        of its annotated rows is split.
    min_annotated : int
        Clusters with fewer annotated rows are left as they are (too little evidence).

    Returns
    -------
    (int array, shape (n,), list of int)
        Cluster ids renumbered 0.. in the order of ``merged``'s ids, a split cluster's
        pieces in its place (-1 = noise; a split cluster's rows that are noise without
        epsilon become noise), so nothing split means ``merged`` unchanged; and the ids (in
        ``merged``) of the clusters split.
    """
    merged = np.asarray(merged, dtype=np.int64)
    fine = np.asarray(fine, dtype=np.int64)
    if merged.shape != fine.shape or merged.ndim != 1 or len(labels) != len(merged):
        raise ValueError(f"merged, fine and labels must have the same length, got {merged.shape}, {fine.shape} "
                         f"and {len(labels)}")
    if max_labels < 1:
        raise ValueError(f"max_labels must be >= 1, got {max_labels}")
    out = np.full(len(merged), NOISE, dtype=np.int64)
    next_id, split = 0, []
    for c in np.unique(merged[merged != NOISE]):
        members = np.flatnonzero(merged == c)
        n_mixed, n_annotated = mixed_label_count([labels[int(i)] for i in members], share=share)
        if n_annotated < min_annotated or n_mixed <= max_labels:
            out[members] = next_id
            next_id += 1
            continue
        split.append(int(c))
        for f in np.unique(fine[members]):
            if f == NOISE:
                continue
            out[members[fine[members] == f]] = next_id
            next_id += 1
    return out, split


class CondensedTree:
    """HDBSCAN's condensed tree (``model.condensed_tree_.to_numpy()``) as arrays to descend.

    Rows are ``(parent, child, lambda_val, child_size)``; points are ``0..n-1``, cluster
    nodes ``n..`` (the root is ``n``) and a child node's id is larger than its parent's.
    A point's row says at which density (``lambda_val``) it leaves its deepest node.
    """

    def __init__(self, tree: np.ndarray, n: int) -> None:
        parent, child = np.asarray(tree["parent"], np.int64), np.asarray(tree["child"], np.int64)
        lam, is_point = np.asarray(tree["lambda_val"], float), np.asarray(tree["child"]) < n
        if is_point.sum() != n or (np.sort(child[is_point]) != np.arange(n)).any():
            raise ValueError(f"the condensed tree must hold each of the {n} points once")
        self.point_node = np.empty(n, np.int64)
        self.point_node[child[is_point]] = parent[is_point]
        self.point_lambda = np.empty(n)
        self.point_lambda[child[is_point]] = lam[is_point]
        self.children: dict[int, list[int]] = {}
        self.parent = {int(c): int(p) for p, c in zip(parent[~is_point], child[~is_point], strict=True)}
        for p, c in zip(parent[~is_point], child[~is_point], strict=True):
            self.children.setdefault(int(p), []).append(int(c))
        # depth-first entry/exit order: point i is under node v iff tin[v] <= tin[node(i)] < tout[v]
        self.tin, self.tout, clock, stack = {}, {}, 0, [(n, False)]
        while stack:
            v, done = stack.pop()
            if done:
                self.tout[v] = clock
                continue
            self.tin[v], clock = clock, clock + 1
            stack.append((v, True))
            stack.extend((c, False) for c in reversed(self.children.get(v, [])))
        self._tin_of_point = np.array([self.tin[int(v)] for v in self.point_node], np.int64)

    def under(self, rows: np.ndarray, node: int) -> np.ndarray:
        """Mask of ``rows`` (point indices) inside ``node``'s subtree."""
        t = self._tin_of_point[rows]
        return (t >= self.tin[node]) & (t < self.tout[node])

    def node_of(self, rows: np.ndarray) -> int:
        """The deepest node holding all ``rows`` (the cluster HDBSCAN selected for them)."""
        node = int(self.point_node[rows[0]])
        while not self.under(rows, node).all():
            node = self.parent[node]
        return node


def cut_mixed_clusters(cluster_ids: np.ndarray, tree: np.ndarray, labels: Sequence[str | None], *,
                       max_labels: int = 3, min_size: int = 5, share: float = MIXED_LABEL_SHARE,
                       min_annotated: int = 5) -> tuple[np.ndarray, dict[str, int]]:
    """Replace every cluster mixing more than ``max_labels`` labels by its parts down HDBSCAN's hierarchy.

    A cluster (an HDBSCAN-selected node of the condensed tree) in which more than
    ``max_labels`` annotated labels each hold more than ``share`` of its annotated rows is
    replaced by its child clusters in the condensed tree, each judged again in turn (rows
    that left the node before it split become noise, as HDBSCAN treats them when it selects
    the children). A mixed leaf keeps its densest part: the rows that stay in it up to the
    lowest density (``lambda``) at which at least ``min_size`` rows remain and no more than
    ``max_labels`` labels are mixed - the core where the leaf's main labels are the majority;
    the rows outside it become noise, and where no such core exists, all its rows do. The
    labels only choose the cut; every row keeps the company the tree gives it, so a
    mislabelled row stays among the rows it reads like.

    Parameters
    ----------
    cluster_ids : int array, shape (n,)
        Cluster per row (-1 = noise); each cluster must be one node's rows of ``tree``.
    tree : structured array
        HDBSCAN's ``condensed_tree_.to_numpy()`` for the same rows.
    labels : sequence, shape (n,)
        Annotated label per row, None (or "") when unannotated.
    max_labels, share, min_annotated : see :func:`split_mixed_clusters`.
    min_size : int
        Smallest core kept (the ``min_cluster_size`` HDBSCAN ran with).

    Returns
    -------
    (int array, shape (n,), dict)
        Cluster ids renumbered 0.. in the order of ``cluster_ids``'s, a cut cluster's parts
        in its place (nothing cut: ``cluster_ids`` unchanged); and counts ``n_cut`` (clusters
        cut), ``n_parts`` (clusters they became), ``n_cores`` (of which leaf cores) and
        ``n_noise`` (rows made noise).
    """
    cluster_ids = np.asarray(cluster_ids, dtype=np.int64)
    if cluster_ids.ndim != 1 or len(labels) != len(cluster_ids):
        raise ValueError(f"cluster_ids and labels must have the same length, got {cluster_ids.shape} and {len(labels)}")
    if max_labels < 1:
        raise ValueError(f"max_labels must be >= 1, got {max_labels}")
    given = np.array([x or "" for x in labels], dtype=object)
    counts = {"n_cut": 0, "n_parts": 0, "n_cores": 0, "n_noise": 0}

    def mixed(rows: np.ndarray) -> bool:
        n_mixed, n_annotated = mixed_label_count(given[rows].tolist(), share=share)
        return n_annotated >= min_annotated and n_mixed > max_labels

    @functools.cache
    def condensed() -> CondensedTree:  # built only when some cluster is mixed
        return CondensedTree(tree, len(cluster_ids))

    def core(rows: np.ndarray) -> list[np.ndarray]:
        lam = condensed().point_lambda[rows]
        for level in np.unique(lam):  # lowest density first: the largest candidate core
            part = rows[lam >= level]
            if len(part) < min_size:
                break
            if not mixed(part):
                counts["n_cores"] += 1
                return [part]
        return []

    def parts(node: int, rows: np.ndarray) -> list[np.ndarray]:
        if not mixed(rows):
            return [rows]
        kids = condensed().children.get(node, [])
        if not kids:
            return core(rows)
        out = []
        for kid in kids:
            inside = rows[condensed().under(rows, kid)]
            if len(inside):
                out.extend(parts(kid, inside))
        return out

    out = np.full(len(cluster_ids), NOISE, dtype=np.int64)
    next_id = 0
    for c in np.unique(cluster_ids[cluster_ids != NOISE]):
        members = np.flatnonzero(cluster_ids == c)
        if not mixed(members):
            pieces = [members]
        else:
            pieces = parts(condensed().node_of(members), members)
            counts["n_cut"] += 1
            counts["n_parts"] += len(pieces)
            counts["n_noise"] += len(members) - sum(len(p) for p in pieces)
        for piece in pieces:
            out[piece] = next_id
            next_id += 1
    return out, counts
