"""The label-issue detector: the evidence of :mod:`hl_debug.scoring.label_issues` combined,
calibrated on synthetic flips, and turned into flags, suggestions and the rows the
``issues`` signal stores.

:class:`LabelIssueDetector` averages the evidence into one distribution per row and
ranks rows by the rank average of two confident-learning views of it (self-confidence and
normalised margin). Its score is calibrated on *synthetic* label flips injected into the
data (and re-scored out of fold), never on the real labels, and the calibrated probability
is shifted from the synthetic flip rate to the real error rate estimated by confident
learning (:func:`prior_shift`), which gives the flags and an estimated precision of the
flagged subset. :func:`issue_rows` assembles one result row per scored utterance, with the
:func:`issue_reason` a reviewer reads.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.linear_model import LogisticRegression

from hl_debug.neighbors import knn
from hl_debug.scoring.label_issues import (
    _check_embeddings,
    _check_labels,
    _logit,
    _other_max,
    api_distribution,
    cleanlab_issue_mask,
    cleanlab_scores,
    cluster_label_distribution,
    confusable_classes,
    ensemble_distribution,
    inject_noise,
    issue_scores,
    knn_label_distribution,
    out_of_fold_probabilities,
)
from hl_debug.threads import limit_threads

log = logging.getLogger(__name__)


def calibration_features(labels: np.ndarray, distribution: np.ndarray) -> np.ndarray:
    """The evidence strength the calibrator sees: logit of the given label's probability
    and its margin to the best other label, shape ``(n, 2)``. Absolute values, not
    ranks, so a calibration learnt on one labelling transfers to another."""
    self_conf = distribution[np.arange(len(labels)), labels]
    return np.column_stack([_logit(self_conf), self_conf - _other_max(distribution, labels)])


class LabelIssueDetector(BaseEstimator):
    """Score every labelled row's chance of being mislabelled, and suggest a fix.

    The evidence — out-of-fold classifier probabilities, the nearest neighbours' labels,
    the row's cluster's labels and the prediction API's answer, whichever are given — is
    averaged into one distribution per row (each member is computed without the row
    itself). The score is :func:`issue_scores` of that distribution (the mean of its
    self-confidence and normalised margin ranks); the suggested label
    is its most likely other label.

    Calibration is honest: ``n_synthetic`` times, ``synthetic_rate`` of the labels are
    flipped (half uniformly, half towards each class's most confusable class), the whole
    evidence is recomputed on the flipped labels, and a logistic regression learns
    P(flipped | self-confidence, margin) (:func:`calibration_features`; rows confident
    learning already suspects are left out, their status being unknown). It never sees the real labels' status. Its posterior is
    shifted from the synthetic flip rate to the real error rate estimated by cleanlab's
    ``find_label_issues`` (a prior shift), which gives the flags and the estimated
    precision of the flagged subset.

    Parameters
    ----------
    classifier : sklearn classifier, optional
        For out-of-fold probabilities (default :func:`default_classifier`).
    calibrator : sklearn binary classifier, optional
        Maps :func:`calibration_features` to P(flipped); default logistic regression.
    n_splits, k : int
        Cross-validation folds; nearest neighbours for label agreement.
    synthetic_rate : float
        Share of labels flipped per synthetic round.
    n_synthetic : int
        Synthetic rounds (each costs one cross-validation; alternate uniform/confusable).
    use_api : bool
        Use the prediction API's answers when given to :meth:`fit`.
    flag_threshold : float
        Flag rows whose prior-shifted posterior is at least this.
    max_calibration_rows : int or None
        The synthetic rounds run on a random subset of at most this many rows (their
        own neighbours recomputed within it): a 2-feature calibrator needs a few hundred
        flips, not another full cross-validation per round, which keeps large exports
        (100k rows) fast. None uses every row.
    n_threads : int or None
        BLAS/OpenMP threads while fitting (default 1: these small products only spin-wait
        with more, 36.9 s -> 2.9 s for the 5-fold classifier at 20k rows on 2 busy cores;
        results equal to 2e-4). None leaves the libraries' defaults.
    random_state : int

    Attributes
    ----------
    pred_probs_ : array (n, n_classes)  out-of-fold classifier probabilities
    knn_probs_ : array (n, n_classes)   neighbour label distribution
    cluster_probs_ : array or None      cluster label distribution (NaN rows: noise)
    api_probs_ : array or None          API answer as a distribution (NaN rows: none)
    distribution_ : array (n, n_classes) the evidence average
    scores_ : array (n,)                issue score (higher = more likely wrong)
    calibrator_ : fitted calibrator     P(flipped | calibration_features)
    synthetic_prior_ : float            flipped share in the calibration data
    noise_rate_ : float                 estimated real error rate (confident learning)
    cleanlab_issues_ : bool array (n,)  cleanlab's find_label_issues on ``pred_probs_``
    posterior_ : array (n,)             prior-shifted probability that the label is wrong
    flagged_ : bool array (n,)
    suggested_ : int array (n,)         most likely other label
    estimated_precision_ : float        mean posterior over the flagged rows (NaN if none)
    """

    def __init__(self, *, classifier: Any = None, calibrator: Any = None, n_splits: int = 5, k: int = 20,
                 synthetic_rate: float = 0.05, n_synthetic: int = 2, use_api: bool = True,
                 flag_threshold: float = 0.5, max_calibration_rows: int | None = 10_000,
                 n_threads: int | None = 1, random_state: int = 0) -> None:
        self.classifier = classifier
        self.calibrator = calibrator
        self.n_splits = n_splits
        self.k = k
        self.synthetic_rate = synthetic_rate
        self.n_synthetic = n_synthetic
        self.use_api = use_api
        self.flag_threshold = flag_threshold
        self.max_calibration_rows = max_calibration_rows
        self.n_threads = n_threads
        self.random_state = random_state

    def _members(self, X: np.ndarray, labels: np.ndarray, K: int, nbrs: tuple[np.ndarray, np.ndarray],
                 cluster_ids: np.ndarray | None, api_probs: np.ndarray | None, seed: int) -> list[np.ndarray]:
        P = out_of_fold_probabilities(X, labels, n_classes=K, classifier=self.classifier,
                                      n_splits=self.n_splits, random_state=seed)
        members = [P, knn_label_distribution(None, labels, n_classes=K, neighbors=nbrs)]
        if cluster_ids is not None:
            members.append(cluster_label_distribution(labels, cluster_ids, n_classes=K))
        if api_probs is not None:
            members.append(api_probs)
        return members

    def fit(self, X: Any, labels: Any, *, n_classes: int | None = None, cluster_ids: Any = None,
            api_labels: Any = None, api_confidence: Any = None,
            neighbors: tuple[np.ndarray, np.ndarray] | None = None) -> LabelIssueDetector:
        """Fit on embeddings ``X`` (n, dim) and given ``labels`` (n,) and score every row.

        ``cluster_ids`` (n,; -1 = noise), ``api_labels`` (n,; -1 = no prediction) with
        ``api_confidence`` (n,) are optional evidence; ``neighbors`` optional precomputed
        (indices, similarities) of shape (n, k), self excluded. The classifiers run with
        ``n_threads`` BLAS/OpenMP threads (:mod:`hl_debug.threads`).
        """
        with limit_threads(self.n_threads):
            return self._fit(X, labels, n_classes=n_classes, cluster_ids=cluster_ids, api_labels=api_labels,
                             api_confidence=api_confidence, neighbors=neighbors)

    def _fit(self, X: Any, labels: Any, *, n_classes: int | None, cluster_ids: Any, api_labels: Any,
             api_confidence: Any, neighbors: tuple[np.ndarray, np.ndarray] | None) -> LabelIssueDetector:
        labels = _check_labels(labels, n_classes)
        X = _check_embeddings(X, len(labels))
        K = int(n_classes if n_classes is not None else labels.max() + 1)
        if not 0 < self.synthetic_rate < 0.5:
            raise ValueError(f"synthetic_rate must be in (0, 0.5), got {self.synthetic_rate}")
        if self.n_synthetic < 1:
            raise ValueError(f"n_synthetic must be >= 1, got {self.n_synthetic}")
        n = len(labels)
        if cluster_ids is not None:
            cluster_ids = np.asarray(cluster_ids)
            if cluster_ids.shape != (n,):
                raise ValueError(f"cluster_ids must have shape ({n},), got {cluster_ids.shape}")
        api_probs = None
        if api_labels is not None and self.use_api:
            api_labels = np.asarray(api_labels, dtype=np.int64)
            api_confidence = np.asarray(api_confidence, dtype=np.float64)
            if api_labels.shape != (n,) or api_confidence.shape != (n,):
                raise ValueError(f"api_labels and api_confidence must have shape ({n},), "
                                 f"got {api_labels.shape} and {api_confidence.shape}")
            if api_labels.max(initial=-1) >= K:
                raise ValueError(f"api_labels hold class {api_labels.max()} but there are only {K} classes")
            api_probs = api_distribution(api_labels, api_confidence, n_classes=K)
        if neighbors is None:
            k = min(self.k, n - 1)
            neighbors = knn(X, k)

        members = self._members(X, labels, K, neighbors, cluster_ids, api_probs, self.random_state)
        self.pred_probs_, self.knn_probs_ = members[0], members[1]
        self.cluster_probs_ = members[2] if cluster_ids is not None else None
        self.api_probs_ = api_probs
        self.distribution_ = ensemble_distribution(*members)
        self.scores_ = issue_scores(labels, self.distribution_)

        # Calibration on synthetic flips only.
        rng = np.random.default_rng(self.random_state)
        confusable = confusable_classes(self.pred_probs_, labels, n_classes=K)
        try:
            self.cleanlab_issues_ = cleanlab_issue_mask(labels, self.pred_probs_)
        except Exception as exc:  # noqa: BLE001 - cleanlab refuses degenerate inputs (e.g. tiny classes)
            log.warning("cleanlab find_label_issues failed (%s); assuming a 1%% error rate", exc)
            self.cleanlab_issues_ = np.zeros(n, dtype=bool)
        # Rows confident learning already suspects have an unknown status in the synthetic
        # data (probably genuine errors, labelled "not flipped"): leave them out of calibration.
        known = ~self.cleanlab_issues_
        cal_X, cal_labels, cal_nbrs, cal_clusters, cal_api = X, labels, neighbors, cluster_ids, api_probs
        if self.max_calibration_rows is not None and n > self.max_calibration_rows:
            sub = np.sort(rng.choice(n, size=self.max_calibration_rows, replace=False))
            cal_X, cal_labels, known = X[sub], labels[sub], known[sub]
            cal_nbrs = knn(cal_X, min(neighbors[0].shape[1], len(sub) - 1))
            cal_clusters = cluster_ids[sub] if cluster_ids is not None else None
            cal_api = api_probs[sub] if api_probs is not None else None
        s_train, t_train = [], []
        for r in range(self.n_synthetic):
            kind = ("uniform", "confusable")[r % 2]
            noisy, flipped = inject_noise(cal_labels, rate=self.synthetic_rate, kind=kind, n_classes=K,
                                          confusable=confusable, random_state=rng)
            m = self._members(cal_X, noisy, K, cal_nbrs, cal_clusters, cal_api, self.random_state + r + 1)
            s_train.append(calibration_features(noisy, ensemble_distribution(*m))[known | flipped])
            t_train.append(flipped[known | flipped])
        calibrator = clone(self.calibrator) if self.calibrator is not None else LogisticRegression(C=10.0)
        self.calibrator_ = calibrator.fit(np.vstack(s_train), np.concatenate(t_train))
        self.synthetic_prior_ = float(np.concatenate(t_train).mean())
        raw = self.calibrator_.predict_proba(calibration_features(labels, self.distribution_))[:, 1]
        self.noise_rate_ = float(np.clip(self.cleanlab_issues_.mean(), 0.01, 0.5))
        self.posterior_ = prior_shift(raw, from_prior=self.synthetic_prior_, to_prior=self.noise_rate_)
        self.flagged_ = self.posterior_ >= self.flag_threshold
        self.estimated_precision_ = (float(self.posterior_[self.flagged_].mean()) if self.flagged_.any()
                                     else float("nan"))
        other = self.distribution_.copy()
        other[np.arange(n), labels] = -np.inf
        self.suggested_ = other.argmax(axis=1)
        return self


def prior_shift(posterior: Any, *, from_prior: float, to_prior: float) -> np.ndarray:
    """Adjust posteriors learned under class prior ``from_prior`` to prior ``to_prior``.

    The odds are rescaled by the ratio of prior odds (Saerens et al., 2002); shape kept.
    """
    for name, v in (("from_prior", from_prior), ("to_prior", to_prior)):
        if not 0 < v < 1:
            raise ValueError(f"{name} must be in (0, 1), got {v}")
    p = np.clip(np.asarray(posterior, dtype=np.float64), 1e-12, 1 - 1e-12)
    odds = p / (1 - p) * (to_prior / (1 - to_prior)) / (from_prior / (1 - from_prior))
    return odds / (1 + odds)


def issue_reason(given: str, suggested: str, p_given: float, p_sugg: float, knn_sugg: int, knn_given: int, k: int,
                 api_label: str | None, api_conf: float | None, cluster_share: float | None) -> str:
    """The short text a reviewer reads: what the classifier, the neighbours, the API and the
    cluster say about one row's label."""
    parts = [f"classifier: {suggested} {p_sugg:.2f} vs {given} {p_given:.2f}",
             f"neighbours: {knn_sugg}/{k} {suggested}, {knn_given}/{k} {given}"]
    if api_label is not None and api_label != given:
        parts.append(f"API says {api_label} ({api_conf:.2f})")
    elif api_label == given:
        parts.append("API agrees with the label")
    if cluster_share is not None and not np.isnan(cluster_share):
        parts.append(f"{cluster_share:.0%} of its cluster share the label")
    return "; ".join(parts)


def issue_rows(det: LabelIssueDetector, *, ids: Sequence[int] | np.ndarray, labels: np.ndarray, classes: Sequence[str],
               k: int, cluster_ids: np.ndarray | None = None, cluster_purity: np.ndarray | None = None,
               api_labels: np.ndarray | None = None, api_confidence: np.ndarray | None = None) -> list[dict[str, Any]]:
    """One row per utterance scored by a fitted ``det``, most suspicious first, ranked from 1.

    ``ids``, ``labels`` (class indices), ``cluster_ids``, ``cluster_purity`` (NaN: unknown),
    ``api_labels`` (-1: no answer) and ``api_confidence`` are the fitted rows' (length m);
    ``k`` the neighbours each row's agreement was counted over.
    """
    y = np.asarray(labels)
    nm = cleanlab_scores(y, det.pred_probs_, method="normalized_margin")
    purity = cluster_purity if cluster_purity is not None else np.full(len(y), np.nan)
    rows = []
    for j in range(len(y)):
        given, sugg = classes[y[j]], classes[det.suggested_[j]]
        a_lab = api_labels is not None and api_labels[j] >= 0 and classes[api_labels[j]] or None
        a_conf = float(api_confidence[j]) if a_lab and api_confidence is not None else None
        rows.append({
            "id": int(ids[j]), "score": float(det.scores_[j]), "given_label": given, "suggested_label": sugg,
            "flagged": int(det.flagged_[j]), "posterior": float(det.posterior_[j]),
            "p_given": float(det.distribution_[j, y[j]]),
            "p_suggested": float(det.distribution_[j, det.suggested_[j]]),
            "cl_self_confidence": float(det.pred_probs_[j, y[j]]), "cl_normalized_margin": float(nm[j]),
            "cl_issue": int(det.cleanlab_issues_[j]), "knn_agreement": float(det.knn_probs_[j, y[j]]),
            "cluster_id": int(cluster_ids[j]) if cluster_ids is not None else None,
            "cluster_purity": None if np.isnan(purity[j]) else float(purity[j]),
            "api_label": a_lab, "api_confidence": a_conf,
            "reason": issue_reason(given, sugg, float(det.pred_probs_[j, y[j]]),
                                   float(det.pred_probs_[j, det.suggested_[j]]),
                                   int(round(det.knn_probs_[j, det.suggested_[j]] * k)),
                                   int(round(det.knn_probs_[j, y[j]] * k)), k, a_lab, a_conf, purity[j]),
        })
    rows.sort(key=lambda row: -row["score"])
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
    return rows
