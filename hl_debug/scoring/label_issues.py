"""Label-issue scoring: pure functions from arrays to per-row evidence and scores.

Every annotated utterance gets independent pieces of evidence that its label is wrong,
each computed without the row scoring itself:

* **out-of-fold probabilities** of a classifier on the sentence embeddings
  (:func:`out_of_fold_probabilities`), fed to cleanlab's confident-learning scores
  (:func:`cleanlab_scores`) and ``find_label_issues``;
* **nearest-neighbour label disagreement** (:func:`knn_label_distribution`): how the
  row's closest utterances in embedding space are labelled;
* **cluster impurity** (:func:`cluster_label_agreement`): the share of the row's cluster
  that carries its label;
* the prediction **API's confident disagreement** (:func:`api_disagreement`).

:class:`~hl_debug.scoring.label_detector.LabelIssueDetector` turns the evidence into
component scores and learns how to combine them per dataset on synthetic flips
(:mod:`hl_debug.scoring.stacking`), which :func:`inject_noise` (uniform, confusable, mixed, or
the data's own flip pattern from :func:`noise_transition`) and :func:`inject_grouped_noise`
plant; :func:`issue_scores` is the previous fixed combination (the rank mean of the evidence
average's self-confidence and normalised margin), kept as a baseline.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from hl_debug.neighbors import knn
from hl_debug.scoring.noise import (  # noqa: F401 - re-exported: the noise kinds live beside the evidence
    NOISE_KINDS,
    confusable_classes,
    inject_grouped_noise,
    inject_noise,
    noise_transition,
)
from hl_debug.scoring.validation import _check_embeddings, _check_labels, _check_probs  # noqa: F401

log = logging.getLogger(__name__)

CLEANLAB_METHODS = ("self_confidence", "normalized_margin", "confidence_weighted_entropy")
_EPS = 1e-6



# -- validation (in :mod:`hl_debug.scoring.validation`) and noise injection (in
# :mod:`hl_debug.scoring.noise`) are re-exported above ------------------------------------


# -- individual signals -----------------------------------------------------------------


def default_classifier() -> LogisticRegression:
    """The classifier on embeddings used for out-of-fold probabilities."""
    return LogisticRegression(C=1.0, tol=1e-3, max_iter=500)


def out_of_fold_probabilities(X: Any, labels: Any, *, n_classes: int | None = None, classifier: Any = None,
                              n_splits: int = 5, random_state: int = 0) -> np.ndarray:
    """Predicted class probabilities for each row from a model that never saw it.

    Parameters
    ----------
    X : array, shape (n, dim)
        Embeddings of the labelled rows.
    labels : int array, shape (n,)
        Given labels as class indices ``0..n_classes-1``.
    n_classes : int, optional
        Number of classes (default ``labels.max() + 1``); classes absent from a fold get
        probability 0 there.
    classifier : sklearn classifier, optional
        Must implement ``predict_proba``; default :func:`default_classifier`.
    n_splits : int
        Stratified K-fold splits (reduced to the smallest class size when needed, min 2).

    Returns
    -------
    array, shape (n, n_classes)
        Out-of-fold probabilities; each row sums to 1.
    """
    labels = _check_labels(labels, n_classes)
    X = _check_embeddings(X, len(labels))
    n_classes = int(n_classes if n_classes is not None else labels.max() + 1)
    counts = np.bincount(labels, minlength=n_classes)
    present = np.flatnonzero(counts)
    if len(present) < 2:
        raise ValueError("out-of-fold probabilities need at least two classes with labelled rows")
    if counts[present].min() < 2:
        small = int(present[counts[present].argmin()])
        raise ValueError(f"class {small} has a single labelled row; out-of-fold probabilities need at least "
                         "two rows per class (drop or merge that class first)")
    splits = int(min(n_splits, counts[present].min()))
    clf = clone(classifier) if classifier is not None else default_classifier()
    cv = StratifiedKFold(n_splits=splits, shuffle=True, random_state=random_state)
    P_present = cross_val_predict(clf, X, labels, cv=cv, method="predict_proba")
    P = np.zeros((len(labels), n_classes))
    P[:, present] = P_present
    return P / P.sum(axis=1, keepdims=True)


def cleanlab_scores(labels: Any, pred_probs: Any, *, method: str = "self_confidence") -> np.ndarray:
    """cleanlab's label-quality score per row (lower = more likely mislabelled).

    ``method`` is one of :data:`CLEANLAB_METHODS`; shape ``(n,)``, values in [0, 1].
    """
    if method not in CLEANLAB_METHODS:
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(CLEANLAB_METHODS)}")
    from cleanlab.rank import get_label_quality_scores

    labels = _check_labels(labels)
    P = _check_probs(pred_probs, len(labels))
    return np.asarray(get_label_quality_scores(labels, P, method=method), dtype=np.float64)


def cleanlab_issue_mask(labels: Any, pred_probs: Any, *, filter_by: str = "prune_by_noise_rate") -> np.ndarray:
    """cleanlab's ``find_label_issues`` (confident learning): boolean mask, shape ``(n,)``."""
    from cleanlab.filter import find_label_issues

    labels = _check_labels(labels)
    P = _check_probs(pred_probs, len(labels))
    return np.asarray(find_label_issues(labels, P, filter_by=filter_by), dtype=bool)


def confident_joint_count(labels: Any, pred_probs: Any) -> int:
    """cleanlab's count of label errors from the confident joint's off-diagonal
    (``num_label_issues(estimation_method="off_diagonal")``: rows whose probability of some
    other class clears that class's average self-confidence), over the classes present.

    The label-issue detector anchors its error count to it (``count="confident_joint"``): on
    the benchmark it is within 20% of the planted count in 7 of 8 cells where the EM fixed
    point of the stacked posteriors is in 4 (``benchmarks/RESULTS.md``).
    """
    from cleanlab.count import num_label_issues

    labels = _check_labels(labels)
    P = _check_probs(pred_probs, len(labels))
    present = np.flatnonzero(np.bincount(labels, minlength=P.shape[1]))
    sub = P[:, present]
    sub = sub / np.clip(sub.sum(axis=1, keepdims=True), 1e-12, None)
    return int(num_label_issues(np.searchsorted(present, labels), sub, estimation_method="off_diagonal"))


def knn_label_distribution(X: Any, labels: Any, *, n_classes: int | None = None, k: int = 10,
                           neighbors: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Similarity-weighted label distribution of each row's ``k`` nearest labelled neighbours.

    The row itself is excluded (so it never votes for its own label); another row with
    the same text counts like any other neighbour — a duplicate labelled differently is
    evidence too.

    Parameters
    ----------
    X : array, shape (n, dim)
        L2-normalised embeddings of the labelled rows.
    labels : int array, shape (n,)
    k : int
        Neighbours per row (capped at ``n - 1``).
    neighbors : (indices, similarities), optional
        Precomputed neighbours, each shape ``(n, k)``, indices into the rows, self
        excluded; when given, ``X`` is not used.

    Returns
    -------
    array, shape (n, n_classes)
        Rows sum to 1 (a small uniform prior keeps every entry above 0).
    """
    labels = _check_labels(labels, n_classes)
    n = len(labels)
    n_classes = int(n_classes if n_classes is not None else labels.max() + 1)
    if neighbors is None:
        X = _check_embeddings(X, n)
        if n < 2:
            raise ValueError("kNN label agreement needs at least two labelled rows")
        k = min(k, n - 1)
        idx, sim = knn(X, k)  # the row itself excluded (callers in a run pass the run's graph)
    else:
        idx, sim = (np.asarray(a) for a in neighbors)
        if idx.shape != sim.shape or len(idx) != n:
            raise ValueError(f"neighbors must be two arrays of shape (n_rows={n}, k), got {idx.shape} and {sim.shape}")
    w = np.clip(sim, 0.0, None) + _EPS
    Q = np.zeros((n, n_classes))
    np.add.at(Q, (np.repeat(np.arange(n), idx.shape[1]), labels[idx].ravel()), w.ravel())
    Q += 0.1 / n_classes  # Laplace-style prior: one unanimous neighbour is not certainty
    return Q / Q.sum(axis=1, keepdims=True)


def cluster_label_agreement(labels: Any, cluster_ids: Any, *, n_classes: int | None = None) -> np.ndarray:
    """Share of the row's cluster (other labelled members) carrying the row's label.

    Rows in noise (``cluster_id == -1``) or alone in their cluster get NaN.
    Shape ``(n,)``; a low value means the row's label is a minority in its cluster.
    """
    labels = _check_labels(labels, n_classes)
    cluster_ids = np.asarray(cluster_ids)
    if cluster_ids.shape != labels.shape:
        raise ValueError(f"cluster_ids must have shape {labels.shape}, got {cluster_ids.shape}")
    out = np.full(len(labels), np.nan)
    for c in np.unique(cluster_ids):
        if c == -1:
            continue
        members = np.flatnonzero(cluster_ids == c)
        if len(members) < 2:
            continue
        counts = np.bincount(labels[members], minlength=int(labels.max()) + 1)
        own = counts[labels[members]] - 1
        out[members] = own / (len(members) - 1)
    return out


def api_disagreement(labels: Any, api_labels: Any, api_confidence: Any) -> np.ndarray:
    """The prediction API's confident disagreement with the given label.

    ``api_labels`` are class indices with -1 where the API gave no prediction.
    Returns shape ``(n,)``: the API's confidence when it predicts another label, 0 when
    it agrees, NaN when it gave no prediction.
    """
    labels = _check_labels(labels)
    api_labels = np.asarray(api_labels, dtype=np.int64)
    conf = np.asarray(api_confidence, dtype=np.float64)
    if api_labels.shape != labels.shape or conf.shape != labels.shape:
        raise ValueError(f"api_labels and api_confidence must have shape {labels.shape}, "
                         f"got {api_labels.shape} and {conf.shape}")
    out = np.where(api_labels == labels, 0.0, np.nan_to_num(conf, nan=0.0))
    out[api_labels < 0] = np.nan
    return out


# -- combination ------------------------------------------------------------------------


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def _other_max(P: np.ndarray, labels: np.ndarray) -> np.ndarray:
    Q = P.copy()
    Q[np.arange(len(labels)), labels] = -np.inf
    return Q.max(axis=1)


def cluster_label_distribution(labels: Any, cluster_ids: Any, *, n_classes: int | None = None) -> np.ndarray:
    """Label distribution of each row's cluster, the row itself left out.

    Noise points (``-1``) and singletons get NaN rows. Shape ``(n, n_classes)``.
    """
    labels = _check_labels(labels, n_classes)
    K = int(n_classes if n_classes is not None else labels.max() + 1)
    cluster_ids = np.asarray(cluster_ids)
    if cluster_ids.shape != labels.shape:
        raise ValueError(f"cluster_ids must have shape {labels.shape}, got {cluster_ids.shape}")
    out = np.full((len(labels), K), np.nan)
    for c in np.unique(cluster_ids):
        members = np.flatnonzero(cluster_ids == c)
        if c == -1 or len(members) < 2:
            continue
        counts = np.bincount(labels[members], minlength=K).astype(float)
        D = np.tile(counts, (len(members), 1))
        D[np.arange(len(members)), labels[members]] -= 1
        D += 0.1 / K
        out[members] = D / D.sum(axis=1, keepdims=True)
    return out


def api_distribution(api_labels: Any, api_confidence: Any, *, n_classes: int) -> np.ndarray:
    """The API's top-1 answer as a distribution: its confidence on its label, the rest
    spread evenly. Rows without a prediction (label -1) are NaN. Shape ``(n, n_classes)``."""
    api_labels = np.asarray(api_labels, dtype=np.int64)
    conf = np.clip(np.nan_to_num(np.asarray(api_confidence, dtype=np.float64), nan=0.0), 0.0, 1.0)
    out = np.tile(((1.0 - conf) / max(n_classes - 1, 1))[:, None], (1, n_classes))
    has = api_labels >= 0
    out[np.flatnonzero(has), api_labels[has]] = conf[has]
    out[~has] = np.nan
    return out


def ensemble_distribution(*distributions: np.ndarray) -> np.ndarray:
    """Mean of the evidence distributions, row by row over the members that have the row.

    Each argument has shape ``(n, n_classes)``; NaN rows mean "no evidence". Shape kept.
    """
    if not distributions:
        raise ValueError("ensemble_distribution needs at least one distribution")
    stack = np.stack([np.asarray(d, dtype=np.float64) for d in distributions])
    if len({d.shape for d in stack}) != 1:
        raise ValueError("every distribution must have the same shape (n_rows, n_classes)")
    R = np.nanmean(stack, axis=0) if np.isnan(stack).any() else stack.mean(axis=0)
    return R / R.sum(axis=1, keepdims=True)


def issue_scores(labels: Any, distribution: Any) -> np.ndarray:
    """Label-issue score from an evidence distribution (higher = more likely wrong).

    The rank average of two confident-learning views of the same distribution: the
    given label's probability (cleanlab's self-confidence — catches random flips) and its
    margin to the best other label (cleanlab's normalized_margin — catches flips to a
    plausible neighbouring class), so neither kind of mistake dominates. Ranks are
    divided by ``n``: values in (0, 1], shape ``(n,)``; ties share their mean rank.
    """
    from scipy.stats import rankdata

    labels = _check_labels(labels)
    R = _check_probs(distribution, len(labels))
    self_conf = R[np.arange(len(labels)), labels]
    margin = self_conf - _other_max(R, labels)
    n = max(len(labels), 1)
    return (rankdata(-self_conf) + rankdata(-margin)) / (2.0 * n)


def encode_labels(values: Sequence[str | None], classes: Sequence[str]) -> np.ndarray:
    """Class indices of ``values`` in ``classes``; -1 for None/unknown. Shape ``(n,)``."""
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index.get(v, -1) if v is not None else -1 for v in values], dtype=np.int64)
