"""Exact cosine k-nearest neighbours (arrays in, arrays out).

The map (UMAP's graph, the ``neighbors`` table), the label-issue detector, the annotation
queue and the near-duplicate finder all need the nearest neighbours of the same vectors, so this
module sits below both ``hl_debug.models`` and ``hl_debug.scoring`` (it imports only numpy).
:func:`knn` computes them with a blocked ``X @ X.T`` on L2-normalised float32 vectors (memory
stays bounded at any n). Callers share one result by passing it along (the signals context
carries the kNN graph); the process-global memo of earlier versions is opt-in
(``cache=True``). Either way at least :data:`MIN_K` neighbours are computed and the first
``k`` returned, so a result never depends on whether it came from the memo.
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



class KnnMemo:
    """An explicit memo of :func:`knn` results, keyed by the vectors' content.

    The pipeline makes one per run and hands it to the steps that need neighbours (the
    analyze step's UMAP graph, the signals step's context), so the kNN of the same
    vectors is computed once per run — about 90 s on 2 cores at 100k rows exactly — without a
    process-global cache. Results are stored read-only: callers share them.

    Parameters
    ----------
    max_entries : int
        Results kept at once (oldest dropped first).
    approx_above : int or None
        Above this many rows the graph comes from an approximate index
        (:func:`approximate_knn`, recall@10 >= 0.99 measured); None: always exact. The
        pipeline passes the ``approx_above`` setting (``HL_APPROX_ABOVE``).
    """

    def __init__(self, max_entries: int = 2, *, approx_above: int | None = None) -> None:
        self.max_entries = max_entries
        self.approx_above = approx_above
        self._entries: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, X: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
        """``_compute(X, width)``, or a wider result for the same ``X`` computed before."""
        key = fingerprint(X)
        with self._lock:
            hit = self._entries.get(key)
            if hit is None or hit[0].shape[1] < width:
                approx = self.approximate(len(X))
                log.info("computing %d nearest neighbours of %d vectors (%s)", width, len(X),
                         "approximate" if approx else "exact")
                hit = approximate_knn(X, width) if approx else _compute(X, width)
                for arr in hit:  # shared between callers: read-only, so nobody edits another's result
                    arr.setflags(write=False)
                if len(self._entries) >= self.max_entries:
                    self._entries.pop(next(iter(self._entries)))
                self._entries[key] = hit
        return hit

    def approximate(self, n: int) -> bool:
        """Whether the graph of ``n`` vectors comes from the approximate index."""
        return self.approx_above is not None and n > self.approx_above

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_GLOBAL = KnnMemo(max_entries=4)  # behind ``cache=True`` only


def fingerprint(X: np.ndarray) -> str:
    """Content hash of an array (shape, dtype and bytes)."""
    h = hashlib.sha1(f"{X.shape}{X.dtype}".encode())
    h.update(np.ascontiguousarray(X).data)
    return h.hexdigest()


def _compute(X: np.ndarray, k: int, queries: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` of every row of ``X`` (or of the rows ``queries`` of it) against all of ``X``."""
    n = len(X)
    queries = np.arange(n) if queries is None else np.asarray(queries)
    m = len(queries)
    idx = np.empty((m, k), dtype=np.int64)
    sim = np.empty((m, k), dtype=np.float32)
    block = max(1, min(m, BLOCK_FLOATS // max(n, 1)))
    for start in range(0, m, block):
        stop = min(m, start + block)
        S = X[queries[start:stop]] @ X.T  # (block, n) cosine similarities
        S[np.arange(stop - start), queries[start:stop]] = -np.inf  # never your own neighbour
        part = np.argpartition(-S, k - 1, axis=1)[:, :k]
        psim = np.take_along_axis(S, part, axis=1)
        # Most similar first; ties broken by index so results are deterministic.
        order = np.lexsort((part, -psim), axis=1)
        idx[start:stop] = np.take_along_axis(part, order, axis=1)
        sim[start:stop] = np.take_along_axis(psim, order, axis=1)
    return idx, np.clip(sim, -1.0, 1.0)


def approximate_knn(X: np.ndarray, k: int, *, connectivity: int = 16, expansion_add: int = 128,
                    expansion_search: int = 64, threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most cosine-similar other rows of every row of L2-normalised ``X``, from an
    HNSW index (usearch), with :func:`_compute`'s conventions (no self, most similar first,
    ties by index, float32 similarities recomputed exactly for the rows found).

    Measured on the grown 20k export (``benchmarks/scale.py``): recall@10 0.996 against
    the exact graph at these parameters, in ~15 s single-threaded against ~12 s exact;
    the index pays from ~50k rows (exact grows with n², the index with n log n).
    ``threads=1`` keeps the graph deterministic (a multi-threaded build inserts in a
    racing order).
    """
    from usearch.index import Index

    n = len(X)
    index = Index(ndim=X.shape[1], metric="cos", dtype="f32", connectivity=connectivity,
                  expansion_add=expansion_add, expansion_search=max(expansion_search, k + 1))
    index.add(np.arange(n, dtype=np.uint64), X, threads=threads)
    found = np.asarray(index.search(X, min(n, k + 1), threads=threads).keys).astype(np.int64)
    found[found >= n] = -1  # usearch pads a short answer with an out-of-range key
    rows = np.arange(n)[:, None]
    keep = found != rows
    keep[keep.all(axis=1), -1] = False  # the row itself was not found: drop the last (the least similar)
    cand = np.where(keep, found, -1)
    cand = np.take_along_axis(cand, np.argsort(~keep, axis=1, kind="stable"), axis=1)[:, :k]
    missing = cand < 0
    if missing.any():  # a row the index found too few neighbours for: exactly
        bad = np.flatnonzero(missing.any(axis=1))
        cand[bad] = _compute(X, k, queries=bad)[0]
    sim = np.empty(cand.shape, dtype=np.float32)
    block = max(1, BLOCK_FLOATS // max(k * X.shape[1], 1))
    for start in range(0, n, block):  # X[cand] whole would be n * k * dim floats
        stop = min(n, start + block)
        sim[start:stop] = np.einsum("ij,ikj->ik", X[start:stop], X[cand[start:stop]])
    order = np.lexsort((cand, -sim), axis=1)
    return np.take_along_axis(cand, order, axis=1), np.clip(np.take_along_axis(sim, order, axis=1), -1.0, 1.0)


def knn(X: Any, k: int, *, cache: bool = False, memo: KnnMemo | None = None) -> tuple[np.ndarray, np.ndarray]:
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
        Memoise by content for later calls in this process (off by default: pass the
        result along, or a ``memo``, instead).
    memo : KnnMemo, optional
        The run's memo: the result is read from it, or computed and kept there.

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
    width = min(n - 1, max(k, MIN_K))  # ties at the k-th place are then broken alike with or without the memo
    if memo is None and not cache:
        idx, sim = _compute(X, width)
        return idx[:, :k], sim[:, :k]
    hit = (memo if memo is not None else _GLOBAL).get(X, width)
    return hit[0][:, :k], hit[1][:, :k]


def subset_knn(X: Any, rows: Any, k: int, *, full: tuple[np.ndarray, np.ndarray] | None = None,
               cache: bool = False, memo: KnnMemo | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest neighbours of ``X[rows]`` among ``X[rows]``: the same answer as
    ``knn(X[rows], k)``, read off the shared kNN of all of ``X`` where it lists at least ``k``
    rows of the subset, computed exactly for the other rows only.

    The label-issue detector needs neighbours among the annotated rows; at 100k rows with 92%
    annotated that saves a second full pass over the data (~90 s on 2 cores).

    Parameters
    ----------
    X : array, shape (n, dim)
    rows : int array, shape (m,)
        Strictly increasing row numbers (so ties, broken by index, order the same way).
    k : int
        1 <= k < m.
    full : (indices, similarities), optional
        :func:`knn` of all of ``X`` with at least ``min(n - 1, max(k, MIN_K))`` columns, when the
        caller has it; computed (or read from the memo with ``cache=True``) when None.

    Returns
    -------
    indices : int64 array, shape (m, k)
        Positions within ``rows`` (not row numbers of ``X``), most similar first.
    similarities : float32 array, shape (m, k)
    """
    X = np.ascontiguousarray(X, dtype=np.float32)
    rows = np.asarray(rows, dtype=np.int64)
    n, m = len(X), len(rows)
    if rows.ndim != 1 or (m and (rows[0] < 0 or rows[-1] >= n)) or np.any(np.diff(rows) <= 0):
        raise ValueError("rows must be strictly increasing row numbers of X")
    if not 1 <= k < m:
        raise ValueError(f"k must be between 1 and len(rows) - 1 ({m - 1}), got {k}")
    width = min(n - 1, max(k, MIN_K))
    if full is not None and full[0].shape[1] >= width:
        full_idx, full_sim = full[0][:, :width], full[1][:, :width]
    else:
        full_idx, full_sim = knn(X, width, cache=cache, memo=memo)
    if m == n:
        return full_idx[:, :k], full_sim[:, :k]
    pos = np.full(n, -1, dtype=np.int64)
    pos[rows] = np.arange(m)
    sub = pos[full_idx[rows]]  # (m, width): neighbours' positions in the subset, -1 outside it
    inside = sub >= 0
    enough = inside.sum(axis=1) >= k
    out_idx = np.empty((m, k), dtype=np.int64)
    out_sim = np.empty((m, k), dtype=np.float32)
    first = np.argsort(~inside[enough], axis=1, kind="stable")[:, :k]  # the first k inside, in order
    out_idx[enough] = np.take_along_axis(sub[enough], first, axis=1)
    out_sim[enough] = np.take_along_axis(full_sim[rows][enough], first, axis=1)
    rest = np.flatnonzero(~enough)
    if rest.size:
        Xs = X[rows]  # one copy of the subset (1M rows: 1.5 GB), normalised in place
        norms = np.linalg.norm(Xs, axis=1, keepdims=True)
        Xs /= np.where(norms == 0, 1.0, norms)
        out_idx[rest], out_sim[rest] = _compute(Xs, k, queries=rest)
    return out_idx, out_sim


def knn_graph(X: np.ndarray, n_neighbors: int, *, metric: str = "cosine",
              memo: KnnMemo | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact k-nearest-neighbour graph, each row's own index first (as UMAP expects).

    Parameters
    ----------
    X : array, shape (n, dim)
    n_neighbors : int
        Columns of the result, self included (so ``n_neighbors - 1`` true neighbours).
    memo : KnnMemo, optional
        The run's memo (cosine only), shared with later steps.

    Returns
    -------
    indices : int array, shape (n, n_neighbors)
    distances : float32 array, shape (n, n_neighbors)
        Metric distances (cosine distance = 1 - cosine similarity); column 0 is 0.

    Exact duplicates have distance 0 to each other, so the query may list a twin before
    the row itself; the row is moved to column 0 explicitly.
    """
    n = len(X)
    if not 2 <= n_neighbors <= n:
        raise ValueError(f"n_neighbors must be between 2 and the number of rows ({n}), got {n_neighbors}")
    out_idx = np.empty((n, n_neighbors), dtype=np.int64)
    out_dist = np.empty((n, n_neighbors), dtype=np.float32)
    out_idx[:, 0], out_dist[:, 0] = np.arange(n), 0.0
    if metric == "cosine":
        idx, sim = knn(X, n_neighbors - 1, memo=memo)
        out_idx[:, 1:], out_dist[:, 1:] = idx, np.maximum(1.0 - sim, 0.0)
        return out_idx, out_dist
    from sklearn.neighbors import NearestNeighbors

    dist, idx = NearestNeighbors(n_neighbors=n_neighbors, metric=metric, algorithm="brute").fit(X).kneighbors(X)
    others = idx != np.arange(n)[:, None]
    others[others.sum(axis=1) == n_neighbors, -1] = False  # the row itself was not listed: drop the farthest
    out_idx[:, 1:] = idx[others].reshape(n, n_neighbors - 1)
    out_dist[:, 1:] = np.maximum(dist[others].reshape(n, n_neighbors - 1), 0.0)
    return out_idx, out_dist


def clear_cache() -> None:
    """Empty the process-wide memo behind ``cache=True``."""
    _GLOBAL.clear()
