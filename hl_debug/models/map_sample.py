"""The map of a large export: fit on a stratified sample, place the rest (arrays in, arrays out).

Above :attr:`~hl_debug.models.map.MapAnalyzer.approx_above` rows the analyzer fits its two
UMAPs and HDBSCAN on a sample stratified by annotated intent (unannotated rows are one
stratum), then places every other row: UMAP's own ``transform`` (in batches, against an
exact cosine index of the sample) and ``hdbscan.approximate_predict`` (HDBSCAN fitted with
``prediction_data=True``). The cluster rules (:mod:`hl_debug.models.cluster_rules`) run on the
sample, where the labels decide where the hierarchy is cut; a placed row takes the cluster
HDBSCAN predicts for it, and where the rules split or cut that cluster, the part its nearest
sample rows (reduced space) belong to; a row HDBSCAN predicts as noise takes the vote of its 5
nearest sample rows (noise only where they are: :data:`NOISE_BY_VOTE`). How far this agrees with the exact path is measured by
``benchmarks/scale.py`` (``benchmarks/RESULTS.md``, ``docs/SCALE.md``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from hl_debug.errors import ConfigError
from hl_debug.models.cluster_rules import NOISE
from hl_debug.neighbors import BLOCK_FLOATS
from hl_debug.settings import resolve

log = logging.getLogger(__name__)

#: Rows placed per ``UMAP.transform`` call (bounded memory; each batch is seeded alike).
TRANSFORM_BATCH = 20_000
#: A row ``approximate_predict`` calls noise takes the vote of its 5 nearest sample rows (5-D), so it
#: is noise only where the sample around it is: at 20k, noise 11.5% -> 2.0% (exact path 8.7%), ARI
#: against the exact path 0.249 -> 0.385, top-50 overlap 37 -> 38 (``benchmarks/RESULTS.md``).
NOISE_BY_VOTE = True


def approx_threshold(value: int | str | None = None) -> int:
    """Rows above which the map is fitted on a sample and the kNN graph is approximate:
    ``value``, else ``HL_APPROX_ABOVE``, else the ``approx_above`` setting's default."""
    raw = resolve("approx_above", value)
    try:
        out = int(raw)
    except (TypeError, ValueError):
        out = -1
    if out < 0:
        raise ConfigError(f"approx_above must be a whole number of rows >= 0, got {raw!r}",
                          hint="set --approx-above / HL_APPROX_ABOVE to e.g. 50000 (docs/SCALE.md)")
    return out


def stratified_sample(labels: Sequence[str | None], size: int, *, seed: int | None = 0) -> np.ndarray:
    """Sorted row numbers of a sample of about ``size`` rows, each intent (and the unannotated
    rows, as one group) in proportion and at least once.

    Parameters
    ----------
    labels : sequence, shape (n,)
        Annotated intent per row, None (or "") when unannotated.
    size : int
        Rows wanted (every row when ``size >= n``).
    seed : int or None
        Seed of the draw (the analyzer's ``random_state``).
    """
    n = len(labels)
    if size >= n:
        return np.arange(n)
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    groups: dict[str, list[int]] = {}
    for i, v in enumerate(labels):
        groups.setdefault(v or "", []).append(i)
    rng = np.random.default_rng(seed)
    frac = size / n
    picked = []
    for key in sorted(groups):
        rows = np.asarray(groups[key])
        take = min(len(rows), max(1, round(frac * len(rows))))
        picked.append(rng.choice(rows, size=take, replace=False))
    return np.sort(np.concatenate(picked))


class SampleIndex:
    """Exact cosine search among the sample's vectors, in the shape UMAP's ``transform`` asks of
    its search index (``query(X, k, epsilon) -> (indices, distances)``)."""

    _angular_trees = True

    def __init__(self, X: np.ndarray) -> None:
        self.X = np.ascontiguousarray(X, dtype=np.float32)

    def query(self, Q: np.ndarray, k: int, epsilon: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        Q = np.ascontiguousarray(Q, dtype=np.float32)
        m, n = len(Q), len(self.X)
        idx, dist = np.empty((m, k), np.int32), np.empty((m, k), np.float32)
        block = max(1, min(m, BLOCK_FLOATS // max(n, 1)))
        for start in range(0, m, block):
            S = Q[start:start + block] @ self.X.T
            part = np.argpartition(-S, k - 1, axis=1)[:, :k]
            psim = np.take_along_axis(S, part, axis=1)
            order = np.lexsort((part, -psim), axis=1)
            idx[start:start + block] = np.take_along_axis(part, order, axis=1)
            dist[start:start + block] = np.maximum(1.0 - np.take_along_axis(psim, order, axis=1), 0.0)
        return idx, dist


class SampleFitUMAP:
    """A UMAP fitted on ``X[sample]`` (its ``precomputed_knn`` is the sample's graph) whose
    ``fit_transform(X)`` returns every row: the sample's fit, the others placed by ``transform``
    in batches of ``batch_size``. Picklable, so the analyzer's second process can run it.

    Parameters
    ----------
    model : umap.UMAP
        Unfitted, built for the sample.
    sample : int array
        Sorted row numbers of the sample.
    batch_size : int
        Rows per ``transform`` call.
    """

    def __init__(self, model: Any, sample: np.ndarray, batch_size: int = TRANSFORM_BATCH,
                 transform_epochs: int | None = None) -> None:
        self.model = model
        self.sample = np.asarray(sample, dtype=np.int64)
        self.batch_size = batch_size
        self.transform_epochs = transform_epochs

    def fit_transform(self, X: np.ndarray) -> np.ndarray:
        import warnings

        from hl_debug.models.umap_jit import _fit_transform

        X = np.asarray(X, dtype=np.float32)
        rest = np.setdiff1d(np.arange(len(X)), self.sample)
        fitted = _fit_transform(self.model, X[self.sample])
        out = np.empty((len(X), fitted.shape[1]), dtype=np.float64)
        out[self.sample] = fitted
        if rest.size:
            self.model._knn_search_index = SampleIndex(X[self.sample])
            if self.transform_epochs:  # UMAP's transform optimises for a third of n_epochs
                self.model.n_epochs = 3 * self.transform_epochs
            log.info("UMAP: placing %d rows on the %d-row sample's map", len(rest), len(self.sample))
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", category=UserWarning)
                for start in range(0, len(rest), self.batch_size):
                    rows = rest[start:start + self.batch_size]
                    out[rows] = self.model.transform(X[rows])
        return out


def place_clusters(model: Any, reduced: np.ndarray, sample: np.ndarray, raw: np.ndarray, final: np.ndarray,
                   probabilities: np.ndarray, outlier_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every row's cluster, membership and outlier score from HDBSCAN fitted on ``reduced[sample]``.

    Parameters
    ----------
    model : hdbscan.HDBSCAN
        Fitted on the sample (with prediction data); another estimator: placed rows take the
        vote of their 5 nearest sample rows.
    reduced : array, shape (n, d)
        The clustering projection of every row.
    sample : int array, shape (m,)
    raw : int array, shape (m,)
        HDBSCAN's own labels of the sample.
    final : int array, shape (m,)
        The sample's clusters after the cluster rules.
    probabilities, outlier_scores : arrays, shape (m,)

    Returns
    -------
    (labels, probabilities, outlier_scores), shape (n,) each
    """
    from sklearn.neighbors import NearestNeighbors

    n = len(reduced)
    rest = np.setdiff1d(np.arange(n), sample)
    labels = np.full(n, NOISE, dtype=np.int64)
    probs, scores = np.full(n, np.nan), np.full(n, np.nan)
    labels[sample], probs[sample], scores[sample] = final, probabilities, outlier_scores
    if not rest.size:
        return labels, probs, scores
    R_rest = reduced[rest]
    from hl_debug.models import gpu

    pred = None
    if gpu.is_cuml(model):
        pred, probs[rest] = (np.asarray(a) for a in gpu.approximate_predict(model, R_rest))
    elif type(model).__module__.startswith("hdbscan"):
        from hdbscan.prediction import approximate_predict, approximate_predict_scores

        if getattr(model, "_prediction_data", None) is None:
            model.generate_prediction_data()
        pred, probs[rest] = approximate_predict(model, R_rest)
        scores[rest] = approximate_predict_scores(model, R_rest)
    nn = NearestNeighbors(n_neighbors=min(5, len(sample))).fit(reduced[sample])
    # raw clusters the rules left whole map to one final cluster; the others are decided by the
    # nearest sample rows of the same raw cluster
    whole = {}
    for c in np.unique(raw[raw != NOISE]):
        finals = np.unique(final[raw == c])
        if len(finals) == 1 and finals[0] != NOISE:
            whole[int(c)] = int(finals[0])
    if pred is None:
        _, near = nn.kneighbors(R_rest)
        labels[rest] = _vote(final[near])
        return labels, probs, scores
    pred = np.asarray(pred, dtype=np.int64)
    out = np.full(len(rest), NOISE, dtype=np.int64)
    mapped = np.array([whole.get(int(c), -2) if c != NOISE else NOISE for c in pred], dtype=np.int64)
    out[mapped >= 0] = mapped[mapped >= 0]
    for c in np.unique(pred[mapped == -2]):
        members = np.flatnonzero(raw == c)
        these = np.flatnonzero(pred == c)
        sub = NearestNeighbors(n_neighbors=min(5, len(members))).fit(reduced[sample[members]])
        _, near = sub.kneighbors(R_rest[these])
        out[these] = _vote(final[members][near])
    if NOISE_BY_VOTE and (pred == NOISE).any():  # noise only where the sample around it is noise
        lost = np.flatnonzero(pred == NOISE)
        _, near = nn.kneighbors(R_rest[lost])
        out[lost] = _vote(final[near])
    labels[rest] = out
    probs[rest[out == NOISE]] = 0.0
    return labels, probs, scores


def _vote(neighbour_labels: np.ndarray) -> np.ndarray:
    """The most common label of each row (ties: the nearest neighbour's)."""
    out = np.empty(len(neighbour_labels), dtype=np.int64)
    for i, row in enumerate(neighbour_labels):
        values, counts = np.unique(row, return_counts=True)
        best = values[counts == counts.max()]
        out[i] = row[0] if row[0] in best else best[0]
    return out
