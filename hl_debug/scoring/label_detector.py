"""The label-issue detector: the evidence of :mod:`hl_debug.scoring.label_issues` combined
by stacking on synthetic flips (:mod:`hl_debug.scoring.stacking`), calibrated, and turned
into flags, an estimated number of label errors and suggestions.

Nothing is fitted on the real labels' status: the detector flips labels itself (synthetic
rounds), recomputes the whole evidence out of fold on the flipped labels, and learns there
both how to combine the evidence and how likely a score means an error. The posteriors are
then anchored (one log-odds offset) to the confident joint's error count divided by that
count's response to the synthetic flips (``count="replica"``: it finds about two thirds of a
data set's mistakes; the EM fixed point of the prior-shifted posteriors over-counted
confusable flips by up to half) — their sum is the estimated number of errors, and the flags the set with the best expected F1
(:mod:`hl_debug.scoring.error_estimate`). :mod:`hl_debug.scoring.issue_rows` turns a fitted
detector into the signal's rows.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.linear_model import LogisticRegression

from hl_debug.neighbors import knn
from hl_debug.scoring.error_count import count_or_none, replica_count
from hl_debug.scoring.error_estimate import (
    error_interval,
    flag_summary,
    flag_threshold,
    prior_shift,
    shift_to_total,
)
from hl_debug.scoring.issue_rows import issue_reason, issue_rows
from hl_debug.scoring.label_issues import (
    _check_embeddings,
    _check_labels,
    api_distribution,
    cleanlab_issue_mask,
    cluster_label_distribution,
    ensemble_distribution,
    issue_scores,
    knn_label_distribution,
    out_of_fold_probabilities,
)
from hl_debug.scoring.stacking import StackedScore, component_scores
from hl_debug.scoring.synthetic_rounds import calibration_features, synthetic_rows
from hl_debug.threads import limit_threads

__all__ = ["LabelIssueDetector", "calibration_features", "issue_reason", "issue_rows", "prior_shift"]

log = logging.getLogger(__name__)

COMBINATIONS = ("stack", "blend")
COUNTS = ("replica", "confident_joint", "em")


class LabelIssueDetector(BaseEstimator):
    """Score every labelled row's chance of being mislabelled, and suggest a fix.

    The evidence — out-of-fold classifier probabilities, the nearest neighbours' labels,
    the row's cluster's labels and the prediction API's answer, whichever are given (each
    computed without the row itself) — gives per-row component scores
    (:func:`~hl_debug.scoring.stacking.component_scores`). ``n_synthetic`` times,
    ``synthetic_rate`` of the labels are flipped (alternately uniformly and towards each
    class's most confusable class) and the evidence is recomputed on the flipped labels;
    rows confident learning already suspects are left out there (their real status is
    unknown). On those rows :class:`~hl_debug.scoring.stacking.StackedScore` learns the
    combination (kept unless a single component, cleanlab's self-confidence among them, beats
    it on every kind of synthetic flip clearly: :func:`~hl_debug.scoring.stacking.robust_choice`)
    and its calibration into P(wrong). The posteriors are moved to sum to the estimated
    number of errors (``count``); the flags maximise the expected F1, or reach
    ``target_precision``.

    ``combine="blend"`` is the previous detector, kept as a baseline: the evidence averaged
    into one distribution, ranked by the rank mean of its self-confidence and normalised
    margin (:func:`issue_scores`), calibrated on two features, shifted to cleanlab's error
    rate and flagged at ``flag_threshold``.

    Parameters
    ----------
    classifier : sklearn classifier, optional
        For out-of-fold probabilities (default :func:`default_classifier`).
    meta_model : sklearn binary classifier, optional
        The stacker (default :func:`~hl_debug.scoring.stackers.default_meta_model`).
    calibrator : sklearn binary classifier, optional
        ``combine="blend"`` only: maps :func:`calibration_features` to P(flipped).
    combine : {"stack", "blend"}
    n_splits, k : int
        Cross-validation folds; nearest neighbours for label agreement.
    synthetic_rate : float
        Share of labels flipped per synthetic round.
    n_synthetic : int
        Synthetic rounds (each costs one cross-validation).
    synthetic_kinds : tuple of str or None
        :func:`inject_noise` kinds the rounds cycle through. Default for ``"stack"``:
        ``("transition",)``, flips drawn from the data's own estimated flip pattern
        (:func:`noise_transition`), so what is learnt transfers to its real mistakes; for
        ``"blend"`` the previous ``("uniform", "confusable")``.
    use_api : bool
        Use the prediction API's answers when given to :meth:`fit` (in the evidence average
        the suggestions and reasons come from).
    stack_api : bool
        Also give the API's answers to the stacker (default False). An API trained on these
        very labels agrees with their real mistakes, yet disagrees with every synthetic flip
        (its answers stay while the label changes): on synthetic flips it looks like a
        near-perfect detector, which does not transfer (with it, the bundled export's estimated
        errors fall from 27 to 7).
    target_precision : float or None
        Flag the most rows whose expected precision is at least this (None: best expected F1).
    flag_threshold : float
        ``combine="blend"`` only: flag rows whose posterior is at least this.
    n_reweight : int
        Refits of the combination with each unflipped synthetic row weighted by its real
        row's estimated chance of being right (0: rows confident learning suspects left out).
        Each round takes more of the real mistakes (planted ones included) out of the "not
        flipped" rows, whose status is unknown: on the benchmark the ranking gains up to 0.04
        AUPRC from 0 to 2 refits (banking uniform 2%, seed 1: 0.923, 0.960, 0.968; 3: 0.970),
        but the real export's estimate falls (27 errors with 1 refit, 14 with 2).
    n_bootstrap : int
        Bootstrap refits of the combination widening the interval of the error count.
    count : {"replica", "confident_joint", "em"}
        The estimated number of errors. ``"replica"``: cleanlab's confident-joint off-diagonal
        count (:func:`confident_joint_count`) divided by its response to the synthetic flips —
        (its count on a synthetic round - its count on the same rows without the flips) /
        flips, each round weighted by the estimated share of its kind of mistake
        (:meth:`_replica_count`). ``"confident_joint"``: that count as it is (it finds about
        two thirds of the planted flips, so it was near the planted count only where it also
        counted the data's own mistakes). In both the posteriors are moved by one log-odds
        offset to sum to the count, the interval widened by the EM's relative disagreement with
        it and by the rounds' spread. ``"em"``: the EM fixed point of the stacked posteriors.
        On the benchmark the replica count minus the same data's count without planted flips
        is within 20% of the planted flips in every cell (``RESULTS.md``).
    max_calibration_rows : int or None
        The synthetic rounds run on a random subset of at most this many rows (their own
        neighbours recomputed within it), which keeps large exports fast. None: every row.
    n_threads : int or None
        BLAS/OpenMP threads while fitting (default 1: these small products only spin-wait
        with more). None leaves the libraries' defaults.
    random_state : int

    Attributes
    ----------
    pred_probs_, knn_probs_ : arrays (n, n_classes)  classifier / neighbour distributions
    cluster_probs_, api_probs_ : arrays or None      cluster / API distributions (NaN: none)
    distribution_ : array (n, n_classes)  the evidence average (suggestions come from it)
    component_names_ : list of str; components_ : array (n, n_components)
    combination_ : StackedScore or None   the learnt combination (``combine="stack"``)
    scores_ : array (n,)                  issue score (higher = more likely wrong)
    synthetic_prior_ : float              flipped share in the calibration data
    noise_rate_ : float                   estimated real error rate
    cleanlab_issues_ : bool array (n,)    cleanlab's find_label_issues on ``pred_probs_``
    posterior_ : array (n,)               probability that the label is wrong
    threshold_ : float                    flags are ``posterior_ >= threshold_``
    flagged_ : bool array (n,)
    suggested_ : int array (n,)           most likely other label
    estimated_errors_, estimated_errors_low_, estimated_errors_high_ : float
        Expected number of label errors and its 90% interval (sampling and bootstrap spread,
        widened by the calibration's largest relative count error on synthetic validation).
    estimated_precision_, estimated_recall_ : float  of the flagged rows (NaN if undefined)
    confident_joint_count_ : int or None  cleanlab's off-diagonal count (None if it failed)
    synthetic_counts_ : list of dict      per synthetic round: kind, its code, flips, and the
                                          confident joint's count without / with them
                                          (``count="replica"`` only; else None)
    count_response_ : float or None       flips the confident joint counts per planted flip
    count_responses_ : list of float      the same per synthetic round
    em_estimated_errors_ : float          the EM fixed point's count, before anchoring
    """

    def __init__(self, *, classifier: Any = None, meta_model: Any = None, calibrator: Any = None,
                 combine: str = "stack", n_splits: int = 5, k: int = 20, synthetic_rate: float = 0.05,
                 n_synthetic: int = 2, synthetic_kinds: tuple[str, ...] | None = None, use_api: bool = True,
                 stack_api: bool = False, target_precision: float | None = None,
                 flag_threshold: float = 0.5, n_reweight: int = 2, n_bootstrap: int = 20, count: str = "replica",
                 max_calibration_rows: int | None = 10_000, n_threads: int | None = 1, random_state: int = 0) -> None:
        self.classifier = classifier
        self.meta_model = meta_model
        self.calibrator = calibrator
        self.combine = combine
        self.n_splits = n_splits
        self.k = k
        self.synthetic_rate = synthetic_rate
        self.n_synthetic = n_synthetic
        self.synthetic_kinds = synthetic_kinds
        self.use_api = use_api
        self.stack_api = stack_api
        self.target_precision = target_precision
        self.flag_threshold = flag_threshold
        self.n_reweight = n_reweight
        self.n_bootstrap = n_bootstrap
        self.count = count
        self.max_calibration_rows = max_calibration_rows
        self.n_threads = n_threads
        self.random_state = random_state

    def _members(self, X: np.ndarray, labels: np.ndarray, K: int, nbrs: tuple[np.ndarray, np.ndarray],
                 cluster_ids: np.ndarray | None, api_probs: np.ndarray | None, seed: int) -> list[np.ndarray | None]:
        """[classifier, kNN, cluster or None, API or None] distributions of ``labels``."""
        P = out_of_fold_probabilities(X, labels, n_classes=K, classifier=self.classifier,
                                      n_splits=self.n_splits, random_state=seed)
        clusters = cluster_label_distribution(labels, cluster_ids, n_classes=K) if cluster_ids is not None else None
        return [P, knn_label_distribution(None, labels, n_classes=K, neighbors=nbrs), clusters, api_probs]

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

    def _check(self, n: int, K: int, cluster_ids: Any, api_labels: Any, api_confidence: Any) -> tuple[Any, Any]:
        if self.combine not in COMBINATIONS:
            raise ValueError(f"unknown combine {self.combine!r}; valid: {', '.join(COMBINATIONS)}")
        if self.count not in COUNTS:
            raise ValueError(f"unknown count {self.count!r}; valid: {', '.join(COUNTS)}")
        if not 0 < self.synthetic_rate < 0.5:
            raise ValueError(f"synthetic_rate must be in (0, 0.5), got {self.synthetic_rate}")
        if self.n_synthetic < 1:
            raise ValueError(f"n_synthetic must be >= 1, got {self.n_synthetic}")
        if self.target_precision is not None and not 0 < self.target_precision <= 1:
            raise ValueError(f"target_precision must be in (0, 1], got {self.target_precision}")
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
        return cluster_ids, api_probs

    def _fit(self, X: Any, labels: Any, *, n_classes: int | None, cluster_ids: Any, api_labels: Any,
             api_confidence: Any, neighbors: tuple[np.ndarray, np.ndarray] | None) -> LabelIssueDetector:
        labels = _check_labels(labels, n_classes)
        X = _check_embeddings(X, len(labels))
        K = int(n_classes if n_classes is not None else labels.max() + 1)
        n = len(labels)
        cluster_ids, api_probs = self._check(n, K, cluster_ids, api_labels, api_confidence)
        if neighbors is None:
            neighbors = knn(X, min(self.k, n - 1))

        members = self._members(X, labels, K, neighbors, cluster_ids, api_probs, self.random_state)
        self.pred_probs_, self.knn_probs_, self.cluster_probs_, self.api_probs_ = members
        self.distribution_ = ensemble_distribution(*[m for m in members if m is not None])
        self.component_names_, self.components_ = component_scores(
            labels, self.pred_probs_, self.knn_probs_, cluster_probs=self.cluster_probs_,
            api_probs=api_probs if self.combine == "blend" or self.stack_api else None)
        try:
            self.cleanlab_issues_ = cleanlab_issue_mask(labels, self.pred_probs_)
        except Exception as exc:  # noqa: BLE001 - cleanlab refuses degenerate inputs (e.g. tiny classes)
            log.warning("cleanlab find_label_issues failed (%s); assuming a 1%% error rate", exc)
            self.cleanlab_issues_ = np.zeros(n, dtype=bool)
        self.confident_joint_count_: int | None = count_or_none(labels, self.pred_probs_)
        if self.confident_joint_count_ is None:
            log.warning("cleanlab's confident-joint count failed; the count is the EM's")

        comps, blend, kinds, rows, known = self._synthetic(X, labels, K, neighbors, cluster_ids, api_probs)
        if self.combine == "stack":
            self._fit_stack(comps, kinds, rows, known)
        else:
            self._fit_blend(labels, blend[known], kinds[known] > 0)
        other = self.distribution_.copy()
        other[np.arange(n), labels] = -np.inf
        self.suggested_ = other.argmax(axis=1)
        return self

    def _synthetic(self, X: np.ndarray, labels: np.ndarray, K: int, neighbors: tuple[np.ndarray, np.ndarray],
                   cluster_ids: np.ndarray | None, api_probs: np.ndarray | None) -> tuple[np.ndarray, ...]:
        """The synthetic rounds' rows (:func:`~hl_debug.scoring.synthetic_rounds.synthetic_rows`);
        sets ``synthetic_counts_``."""
        *rows, self.synthetic_counts_ = synthetic_rows(self, X, labels, K, neighbors, cluster_ids, api_probs)
        return tuple(rows)

    def _fit_stack(self, comps: np.ndarray, kinds: np.ndarray, rows: np.ndarray, known: np.ndarray) -> None:
        # First pass: unflipped rows confident learning suspects are left out. Then each
        # unflipped synthetic row counts as "not flipped" with the weight of its real row's
        # chance of being right: hard but correct rows stay in (leaving them all out made the
        # meta model take them for mistakes and over-count), real mistakes drop out.
        weight = known.astype(float)
        for r in range(self.n_reweight + 1):
            last = r == self.n_reweight
            comb = StackedScore(meta_model=self.meta_model, n_bootstrap=self.n_bootstrap if last else 0,
                                check_counts=last, random_state=self.random_state)
            comb.fit(comps, kinds, self.components_, names=self.component_names_, sample_weight=weight)
            weight = np.where(kinds > 0, 1.0, 1.0 - comb.posterior_[rows])
        self.combination_: StackedScore | None = comb
        log.info("label issues: combination %s (weighted synthetic AUPRC %s; mix of mistakes %s)", comb.choice_,
                 ", ".join(f"{k} {v:.3f}" for k, v in comb.synthetic_auprc_.items()),
                 np.round(comb.priors_, 4).tolist())
        self.scores_, self.posterior_ = comb.scores_, comb.posterior_
        self.synthetic_prior_ = float((kinds > 0).mean())
        bias = max((abs(e) for e in comb.count_errors_.values()), default=0.0)
        self.em_estimated_errors_ = em = float(comb.posterior_.sum())
        target, totals = self.confident_joint_count_, comb.totals_
        self.count_response_: float | None = None
        self.count_responses_: list[float] = []
        if self.count == "replica" and target is not None:
            target, spread = self._replica_count(target, comb)
            bias = max(bias, spread)
        if self.count in ("replica", "confident_joint") and target is not None and 0 < target < len(self.posterior_) / 2:
            # Anchor the count to the confident joint's; the EM's disagreement with it is
            # calibration uncertainty the interval keeps (a monotone shift: ranking unchanged).
            self.posterior_ = shift_to_total(self.posterior_, target)
            totals = [t * target / em for t in totals] if em > 0 else totals
            bias = max(bias, abs(em - target) / target)
        self.noise_rate_ = float(self.posterior_.mean())
        self._summarise(flag_threshold(self.posterior_, target_precision=self.target_precision), totals,
                        relative_bias=bias)

    def _replica_count(self, count: int, comb: StackedScore) -> tuple[int, float]:
        """The confident joint's count over its response to the synthetic rounds' flips
        (:func:`~hl_debug.scoring.error_count.replica_count`), and the response's relative
        half-range (calibration uncertainty); sets ``count_response_``, ``count_responses_``."""
        mix = dict(zip(comb.kinds_.tolist(), comb.priors_.tolist()))
        count, self.count_response_, self.count_responses_, spread = replica_count(count, self.synthetic_counts_, mix)
        return count, spread

    def _fit_blend(self, labels: np.ndarray, blend: np.ndarray, target: np.ndarray) -> None:
        self.combination_ = None
        self.scores_ = issue_scores(labels, self.distribution_)
        calibrator = clone(self.calibrator) if self.calibrator is not None else LogisticRegression(C=10.0)
        self.calibrator_ = calibrator.fit(blend, target)
        self.synthetic_prior_ = float(target.mean())
        raw = self.calibrator_.predict_proba(calibration_features(labels, self.distribution_))[:, 1]
        self.noise_rate_ = float(np.clip(self.cleanlab_issues_.mean(), 0.01, 0.5))
        self.posterior_ = prior_shift(raw, from_prior=self.synthetic_prior_, to_prior=self.noise_rate_)
        self._summarise(self.flag_threshold, None)

    def _summarise(self, threshold: float, totals: list[float] | None, *, relative_bias: float = 0.0) -> None:
        self.threshold_ = float(threshold)
        self.flagged_ = self.posterior_ >= self.threshold_
        summary = flag_summary(self.posterior_, self.flagged_)
        self.estimated_errors_ = summary["estimated_errors"]
        self.estimated_precision_ = summary["estimated_precision"]
        self.estimated_recall_ = summary["estimated_recall"]
        self.estimated_errors_low_, self.estimated_errors_high_ = error_interval(self.posterior_, totals,
                                                                                relative_bias=relative_bias)
