"""Out-of-scope evidence: per-row measurements of how far an utterance sits from the annotated
intents, computed as if some intents did not exist (pure functions on arrays).

:func:`oos_evidence` gives the columns of :data:`EVIDENCE` for a set of rows with a set of
intents held out: the kNN similarity to the nearest annotated rows (:func:`top_k_known`, the
run's kNN graph where it lists enough of them), the class-conditional and background
Mahalanobis distances and the Gaussian classifier's top posterior (:class:`SharedGaussians`),
the classifier's maximum softmax probability and energy, and the unannotated share of the
neighbours. :class:`hl_debug.scoring.out_of_scope.OutOfScopeDetector` combines them.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from sklearn.base import clone

from hl_debug.threads import limit_threads

#: The evidence columns of :func:`oos_evidence`, in order.
EVIDENCE = ("nn_similarity", "knn_similarity", "mahalanobis", "background_mahalanobis", "gaussian_probability",
            "max_probability", "energy", "unannotated_share")
_BLOCK = 4_000_000  # similarities held at once in the exact kNN fallback
_ROWS = 65_536  # rows converted to float64 at once by the Gaussians; queries per chunk of the blocked search
_KEY_BLOCK = 16_384  # known rows per block of that fallback when there are more of them
_EPS = 1e-6


def top_k_known(X: np.ndarray, queries: np.ndarray, known: np.ndarray, k: int, *,
                graph: tuple[np.ndarray, np.ndarray] | None = None,
                two_hops: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``k`` most similar rows among the ``known`` ones (never the query itself) of each query.

    Parameters
    ----------
    X : float array, shape (n, dim), L2-normalised
    queries : int array, shape (m,)
        Row numbers to look up.
    known : bool array, shape (n,)
        Rows that may be neighbours.
    k : int
        Neighbours (fewer when fewer rows are known).
    graph : (indices, similarities), optional
        The kNN graph of all of ``X`` (self excluded, most similar first): used for the
        queries it lists at least ``k`` known rows of, exact search for the others.
    two_hops : bool
        With a graph, a query it lists fewer than ``k`` known rows of is searched among its
        neighbours' neighbours first (``width + width**2`` candidates, similarities exact),
        and exactly only when those hold fewer than ``k`` known rows too: an approximate
        answer, for when the graph itself is approximate (``OutOfScopeDetector``'s
        ``two_hops``). At a million rows ~55k unannotated rows list fewer than 10
        annotated ones: exactly, ~50 trillion multiply-adds.

    Returns
    -------
    mean_similarity, max_similarity : float arrays, shape (m,)
        NaN when no row is known.
    nearest : int array, shape (m,)
        Row number of the most similar known row (-1 when none).
    """
    queries = np.asarray(queries, dtype=np.int64)
    m = len(queries)
    mean, best = np.full(m, np.nan), np.full(m, np.nan)
    nearest = np.full(m, -1, dtype=np.int64)
    keys = np.flatnonzero(known)
    k = min(k, len(keys))
    if not m or k < 1:
        return mean, best, nearest
    todo = np.ones(m, dtype=bool)
    if graph is not None and graph[0].shape[1]:
        gi, gs = graph[0][queries], graph[1][queries]
        ok = known[gi]
        enough = ok.sum(axis=1) >= k
        first = np.argsort(~ok[enough], axis=1, kind="stable")[:, :k]
        sims = np.take_along_axis(gs[enough], first, axis=1).astype(float)
        mean[enough], best[enough] = sims.mean(axis=1), sims[:, 0]
        nearest[enough] = np.take_along_axis(gi[enough], first[:, :1], axis=1)[:, 0]
        todo = ~enough
        if two_hops and todo.any():
            todo[todo] = ~_two_hop_top_k(X, queries[todo], known, k, graph[0], out=(mean, best, nearest),
                                         at=np.flatnonzero(todo))
    rest = np.flatnonzero(todo)
    if len(keys) > _KEY_BLOCK:  # one pass over every known row per handful of queries would crawl
        _blocked_top_k(X, queries[rest], keys, k, out=(mean, best, nearest), at=rest)
        return mean, best, nearest
    Xk = X[keys]
    step = max(1, _BLOCK // max(len(keys), 1))
    for start in range(0, len(rest), step):
        part = rest[start:start + step]
        S = X[queries[part]] @ Xk.T
        hit = np.searchsorted(keys, queries[part])
        mine = (hit < len(keys)) & (keys[np.minimum(hit, len(keys) - 1)] == queries[part])
        kk = min(k, len(keys) - 1) if mine.any() else k
        S[np.flatnonzero(mine), hit[mine]] = -np.inf
        if kk < 1:
            continue
        S = S.astype(np.float32, copy=False)
        ts = -np.partition(-S, kk - 1, axis=1)[:, :kk] if kk < S.shape[1] else S  # the top kk, unordered
        first = np.argmax(S, axis=1)  # lowest index among ties, as the graph orders them
        ts = np.where(np.isfinite(ts), ts, np.nan)
        mean[part], best[part], nearest[part] = np.nanmean(ts, axis=1), S[np.arange(len(part)), first], keys[first]
    return mean, best, nearest


def _two_hop_top_k(X: np.ndarray, queries: np.ndarray, known: np.ndarray, k: int, graph_idx: np.ndarray, *,
                   out: tuple[np.ndarray, np.ndarray, np.ndarray], at: np.ndarray) -> np.ndarray:
    """The top ``k`` known rows among each query's neighbours and their neighbours (see
    :func:`top_k_known`'s ``two_hops``); written into ``out`` at ``at`` for the queries with
    at least ``k`` known candidates, whose mask it returns."""
    mean, best, nearest = out
    found = np.zeros(len(queries), dtype=bool)
    width = graph_idx.shape[1]
    step = max(1, 16 * _BLOCK // max(width * (width + 1) * X.shape[1], 1))  # candidates' vectors: ~256 MB
    for start in range(0, len(queries), step):
        q = queries[start:start + step]
        one = graph_idx[q]
        cand = np.sort(np.concatenate([one, graph_idx[one].reshape(len(q), -1)], axis=1), axis=1)
        ok = known[cand] & (cand != q[:, None])
        ok[:, 1:] &= cand[:, 1:] != cand[:, :-1]  # each candidate once
        enough = ok.sum(axis=1) >= k
        if not enough.any():
            continue
        c, okc, qe = cand[enough], ok[enough], q[enough]
        S = np.einsum("ij,ikj->ik", X[qe], X[c]).astype(np.float32)
        S[~okc] = -np.inf
        order = np.lexsort((c, -S), axis=1)[:, :k]  # most similar first, ties by row number
        ts = np.take_along_axis(S, order, axis=1).astype(float)
        rows = at[start:start + step][enough]
        mean[rows], best[rows] = ts.mean(axis=1), ts[:, 0]
        nearest[rows] = np.take_along_axis(c, order[:, :1], axis=1)[:, 0]
        found[start:start + step] = enough
    return found


def _blocked_top_k(X: np.ndarray, queries: np.ndarray, keys: np.ndarray, k: int, *,
                   out: tuple[np.ndarray, np.ndarray, np.ndarray], at: np.ndarray) -> None:
    """:func:`top_k_known`'s exact search for many ``keys`` (sorted row numbers): each block of
    ``_KEY_BLOCK`` keys is gathered once per ``_ROWS`` queries and multiplied with blocks of
    them (matrix products, on every core: they are large), keeping each query's running top
    ``k`` — the same answer as one product against every key."""
    mean, best, nearest = out
    qstep = max(1, _BLOCK // _KEY_BLOCK)
    with limit_threads(os.cpu_count() or 1):
        for cs in range(0, len(queries), _ROWS):
            chunk = queries[cs:cs + _ROWS]
            Q = X[chunk]
            top = np.full((len(chunk), k), -np.inf, dtype=np.float32)
            first_sim = np.full(len(chunk), -np.inf, dtype=np.float32)
            first_key = np.full(len(chunk), -1, dtype=np.int64)
            mine = np.zeros(len(chunk), dtype=bool)
            for ks in range(0, len(keys), _KEY_BLOCK):
                kb = keys[ks:ks + _KEY_BLOCK]
                Kt = np.ascontiguousarray(X[kb].T)
                kk = min(k, len(kb))
                for qs in range(0, len(chunk), qstep):
                    q = chunk[qs:qs + qstep]
                    S = (Q[qs:qs + qstep] @ Kt).astype(np.float32, copy=False)
                    hit = np.searchsorted(kb, q)
                    self_in = (hit < len(kb)) & (kb[np.minimum(hit, len(kb) - 1)] == q)
                    S[np.flatnonzero(self_in), hit[self_in]] = -np.inf
                    mine[qs:qs + qstep] |= self_in
                    j = np.argmax(S, axis=1)  # lowest index among ties; earlier blocks win ties (keys ascend)
                    sj = S[np.arange(len(q)), j]
                    better = sj > first_sim[qs:qs + qstep]
                    first_sim[qs:qs + qstep][better] = sj[better]
                    first_key[qs:qs + qstep][better] = kb[j[better]]
                    part = -np.partition(-S, kk - 1, axis=1)[:, :kk] if kk < S.shape[1] else S
                    both = np.concatenate([top[qs:qs + qstep], part], axis=1)
                    top[qs:qs + qstep] = -np.partition(-both, k - 1, axis=1)[:, :k]
            kk = min(k, len(keys) - 1) if mine.any() else k
            if kk < 1:
                continue
            ts = -np.sort(-top, axis=1)[:, :kk]
            ts = np.where(np.isfinite(ts), ts, np.nan)
            rows = at[cs:cs + _ROWS]
            mean[rows], best[rows], nearest[rows] = np.nanmean(ts, axis=1), first_sim, first_key


class SharedGaussians:
    """Class-conditional Gaussians with one shared covariance, and a background Gaussian, of
    the annotated rows — re-estimated without the intents or rows a calibration fold leaves out.

    Both covariances are Ledoit-Wolf shrunk (the shrinkage intensity estimated once on every
    annotated row, or on a seeded sample of ``shrinkage_rows`` of them when there are more: at
    that size the intensity is near zero either way). A fold's estimates come from the full
    scatter matrices minus the left-out rows' (exact, and two Cholesky factorisations per fold).
    Leaving rows out matters twice: held-out intents inside the background Gaussian would leak
    them, and in 384 dimensions a row inside the covariance estimate sits measurably closer than
    a new one (an annotated row scored as in-scope traffic must be left out of it, or the
    false-positive rate is understated). The scatter matrices are summed over blocks of
    ``_ROWS`` rows in float64, so memory stays flat in the number of rows.
    """

    def __init__(self, X: np.ndarray, y: np.ndarray, *, shrinkage_rows: int = 100_000, random_state: int = 0) -> None:
        from sklearn.covariance import ledoit_wolf_shrinkage

        self.X = X
        self.y = y
        rows = np.flatnonzero(y >= 0)
        n_classes = int(y[rows].max()) + 1
        self.counts = np.bincount(y[rows], minlength=n_classes).astype(float)
        self.sums, self.second = self._scatter(rows, n_classes)
        means = self.sums / np.maximum(self.counts, 1)[:, None]
        if len(rows) > shrinkage_rows:
            rows = np.sort(np.random.default_rng(random_state).choice(rows, shrinkage_rows, replace=False))
        Xr = self._rows(rows)
        self.alpha0 = float(ledoit_wolf_shrinkage(Xr))
        Xr -= means[y[rows]]
        self.alpha = float(ledoit_wolf_shrinkage(Xr, assume_centered=True))
        del Xr
        self._models: dict[Any, tuple] = {}

    def _rows(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.X[rows], dtype=np.float64)

    def _scatter(self, rows: np.ndarray, n_classes: int, *, minus: tuple[np.ndarray, np.ndarray] | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Per-class sums and the second-moment matrix of ``rows``, block by block; with
        ``minus`` (sums, second), those less the rows' (the rows subtracted one by one, in order)."""
        dim = self.X.shape[1]
        if minus is None:
            sums, second = np.zeros((n_classes, dim)), np.zeros((dim, dim))
        else:
            sums, second = minus[0].copy(), minus[1].copy()
        for start in range(0, len(rows), _ROWS):
            part = rows[start:start + _ROWS]
            Xp = self._rows(part)
            if minus is None:
                np.add.at(sums, self.y[part], Xp)
                second += Xp.T @ Xp
            else:
                np.subtract.at(sums, self.y[part], Xp)
                second -= Xp.T @ Xp
        return sums, second

    def _shrunk_cholesky(self, cov: np.ndarray, alpha: float) -> np.ndarray:
        mu = np.trace(cov) / len(cov)
        shrunk = (1 - alpha) * cov + alpha * mu * np.eye(len(cov))
        shrunk.flat[:: len(cov) + 1] += _EPS * max(mu, _EPS)
        return np.linalg.cholesky(shrunk)

    def _model(self, classes: np.ndarray, dropped: np.ndarray | None, key: Any) -> tuple:
        key = (tuple(int(c) for c in classes), key)
        if key not in self._models:
            gone = ~np.isin(self.y, classes) & (self.y >= 0)
            if dropped is not None:
                gone |= dropped & (self.y >= 0)
            gone_rows = np.flatnonzero(gone)
            counts = self.counts - np.bincount(self.y[gone_rows], minlength=len(self.counts))
            sums, second = self._scatter(gone_rows, len(self.counts), minus=(self.sums, self.second))
            counts, sums = counts[classes], sums[classes]
            n = max(counts.sum(), 1)
            means = sums / np.maximum(counts, 1)[:, None]
            within = (second - (sums / np.maximum(counts, 1)[:, None]).T @ sums) / n
            m0 = sums.sum(axis=0) / n
            background = second / n - np.outer(m0, m0)
            self._models[key] = (self._shrunk_cholesky(within, self.alpha), means,
                                 self._shrunk_cholesky(background, self.alpha0), m0, counts)
        return self._models[key]

    def distances(self, queries: np.ndarray, classes: np.ndarray, *, dropped: np.ndarray | None = None,
                  key: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Squared Mahalanobis distances of rows ``queries`` to the means of ``classes``, (m, C),
        and to the background Gaussian of those classes' rows, (m,); and the classes' log priors.

        ``dropped`` (bool per row) leaves rows out of the estimates; ``key`` names that set for
        the cache of fitted models (None: no rows dropped)."""
        from scipy.linalg import solve_triangular

        L, means, L0, m0, counts = self._model(classes, dropped, key)
        M = solve_triangular(L, means.T, lower=True).T
        MM = (M * M).sum(axis=1)[None, :]
        D = np.empty((len(queries), len(classes)))
        D0 = np.empty(len(queries))
        for start in range(0, len(queries), _ROWS):
            Xq = self._rows(queries[start:start + _ROWS])
            Z = solve_triangular(L, Xq.T, lower=True).T
            D[start:start + _ROWS] = (Z * Z).sum(axis=1)[:, None] - 2 * Z @ M.T + MM
            Z0 = solve_triangular(L0, (Xq - m0).T, lower=True).T
            D0[start:start + _ROWS] = (Z0 * Z0).sum(axis=1)
        return np.maximum(D, 0.0), D0, np.log(np.maximum(counts, 1) / max(counts.sum(), 1))


def _gaussian_evidence(D: np.ndarray, D0: np.ndarray, log_prior: np.ndarray) -> np.ndarray:
    logits = -0.5 * D + log_prior
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    return np.column_stack([np.sqrt(D.min(axis=1)), np.sqrt(D0), p.max(axis=1)])


def classifier_evidence(clf: Any, X: np.ndarray) -> np.ndarray:
    logits = np.atleast_2d(clf.decision_function(X).T).T
    if logits.shape[1] == 1:  # binary: decision_function is the log-odds of the second class
        logits = np.column_stack([np.zeros(len(X)), logits[:, 0]])
    top = logits.max(axis=1, keepdims=True)
    lse = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
    return np.column_stack([np.exp(top[:, 0] - lse), lse])


def oos_evidence(X: np.ndarray, y: np.ndarray, queries: np.ndarray, *, excluded: np.ndarray, k: int,
                 gaussians: SharedGaussians | None = None, graph: tuple[np.ndarray, np.ndarray] | None = None,
                 classifier: Any = None, dropped: np.ndarray | None = None, dropped_key: Any = None,
                 two_hops: bool = False, nearest: np.ndarray | None = None) -> np.ndarray:
    """The evidence columns (:data:`EVIDENCE`) of rows ``queries`` as if the intents
    ``excluded`` had no annotated rows.

    Parameters
    ----------
    X : float array, shape (n, dim), L2-normalised
    y : int array, shape (n,)
        Class index per row, -1 when unannotated.
    queries : int array, shape (m,)
    excluded : int array
        Class indices treated as unknown (their rows count as unannotated).
    k : int
        Neighbours for the kNN similarity and the unannotated share.
    gaussians : SharedGaussians, optional
        The Mahalanobis model of ``X``/``y`` (made here when not given).
    graph : (indices, similarities), optional
        The run's kNN graph of ``X`` (at least ``k`` wide).
    classifier : estimator, optional
        A classifier to fit on the known rows for the maximum softmax probability and energy;
        None leaves those columns NaN.
    dropped : bool array, shape (n,), optional
        Annotated rows left out of the Gaussians and the classifier (the queries themselves,
        when annotated rows are scored as in-scope traffic); the kNN search never returns a
        query itself, so it needs no such fold.
    dropped_key : hashable
        Names the ``dropped`` set (the Gaussians cache one model per set).
    two_hops : bool
        :func:`top_k_known`'s two-hop search (for an approximate graph).
    nearest : int array, shape (m,), optional
        Filled with each query's most similar known row (-1: none), its similarity being the
        ``nn_similarity`` column.

    Returns
    -------
    float array, shape (m, len(EVIDENCE))
    """
    queries = np.asarray(queries, dtype=np.int64)
    known_classes = np.setdiff1d(np.unique(y[y >= 0]), excluded)
    known = np.isin(y, known_classes)
    out = np.full((len(queries), len(EVIDENCE)), np.nan)
    if not len(queries) or not len(known_classes):
        return out
    mean, best, near = top_k_known(X, queries, known, k, graph=graph, two_hops=two_hops)
    if nearest is not None:
        nearest[:] = near
    out[:, 0], out[:, 1] = best, mean
    g = gaussians if gaussians is not None else SharedGaussians(X, y)
    D, D0, log_prior = g.distances(queries, known_classes, dropped=dropped, key=dropped_key)
    out[:, 2:5] = _gaussian_evidence(D, D0, log_prior)
    if classifier is not None and len(known_classes) >= 2:
        fit_rows = np.flatnonzero(known & (~dropped if dropped is not None else True))
        with limit_threads(1):
            clf = clone(classifier).fit(X[fit_rows], y[fit_rows])
        out[:, 5:7] = classifier_evidence(clf, X[queries])
    if graph is not None and graph[0].shape[1]:
        kk = min(k, graph[0].shape[1])
        out[:, 7] = 1.0 - known[graph[0][queries, :kk]].mean(axis=1)
    return out
