"""Out-of-scope scoring: how likely each utterance fits none of the annotated intents.

Evidence (:func:`hl_debug.scoring.oos_evidence.oos_evidence`; combined, each says "more out of scope" one way):

* **kNN similarity** to the nearest annotated rows (the 1-NN and the mean of the top ``k``),
  read off the run's kNN graph where it lists enough annotated rows, exact otherwise;
* a **class-conditional Mahalanobis distance** to the nearest intent (class means and a
  shared Ledoit-Wolf shrunk covariance), its distance to the background Gaussian of all the
  annotated rows (the "relative" Mahalanobis of Ren et al. 2021 is their difference) and the
  resulting Gaussian classifier's maximum posterior;
* the **classifier's maximum softmax probability** and **energy** (logsumexp of the logits;
  Liu et al. 2020) — optional and off by default (see ``classifier``);
* the **share of unannotated rows** among the row's nearest neighbours: a new need among users
  shows up as a dense region of traffic nobody has labelled.

:class:`OutOfScopeDetector` calibrates them without any out-of-scope labels: the intents are
split into folds; for each fold the evidence is recomputed as if its intents did not exist, so
its annotated rows become pseudo out-of-scope rows; every annotated row is also scored with
its intent present, as an in-scope row — out of fold (the Gaussians and the classifier are
estimated without its fold of rows; the kNN search never returns the row itself). A logistic regression learns the combination on pseudo-OOS vs in-scope rows,
and the in-scope rows' combined scores give each score its estimated false-positive rate on
in-scope traffic, so "flag at 5% false positives" is a threshold with a meaning.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from hl_debug.scoring.oos_evidence import (
    EVIDENCE,
    SharedGaussians,
    oos_evidence,
    top_k_known,
)
from hl_debug.threads import limit_threads

log = logging.getLogger(__name__)

__all__ = ["EVIDENCE", "OutOfScopeDetector", "estimate_share", "oos_evidence", "top_k_known"]
_EPS = 1e-6


def _proportional_sample(labels: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A bool mask of about ``size`` of ``labels``' entries, each label in proportion and at least once."""
    keep = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        keep[rng.choice(rows, min(len(rows), max(1, round(size * len(rows) / len(labels)))), replace=False)] = True
    return keep


def _features(E: np.ndarray, columns: list[int]) -> np.ndarray:
    """The combiner's inputs: evidence columns, with probabilities on a log-odds scale."""
    F = E[:, columns].copy()
    for j, c in enumerate(columns):
        if EVIDENCE[c] in ("gaussian_probability", "max_probability"):
            p = np.clip(F[:, j], _EPS, 1 - _EPS)
            F[:, j] = np.log(p / (1 - p))
    return F


class OutOfScopeDetector(BaseEstimator):
    """Out-of-scope scores with an estimated false-positive rate, calibrated on held-out intents.

    Parameters
    ----------
    k : int
        Neighbours for the kNN evidence.
    n_folds : int
        Folds of intents held out in turn (capped at the number of intents).
    target_fpr : float
        Estimated false-positive rate at which rows become candidates.
    classifier : estimator, "default" or None
        Fitted once per fold for the maximum softmax probability and energy evidence
        ("default": :func:`hl_debug.scoring.label_issues.default_classifier`). Off by default:
        with it the held-out-intent combination transfers worse to new traffic (banking77, 20
        intents held out: AUROC 0.979 vs 0.987; ``benchmarks/RESULTS.md``) at three times the
        cost; the Gaussian classifier's posterior stands in for it.
    use_unannotated_share : bool
        Whether the share of unannotated neighbours is evidence (transductive: it helps when
        out-of-scope traffic forms dense unlabelled regions).
    max_calibration_rows : int or None
        At most this many annotated rows (a seeded sample, each intent in proportion) are
        scored again as pseudo out-of-scope rows; None: all of them. Every annotated row is
        still scored as in-scope traffic. The exact search for a pseudo row's nearest known rows
        reads every known row (its own intent's neighbours are gone from the kNN graph), so at a
        million rows all of them would take hours; 20,000 rows put the combination's six weights
        and the recall estimate well within noise (``benchmarks/RESULTS.md``, "Out-of-scope
        detection") and leave anything up to 20,000 annotated rows as before.
    two_hops : bool
        Search a row's nearest known rows among its graph neighbours' neighbours before
        searching exactly (:func:`top_k_known`): for a graph that is approximate already (the
        signal sets it when the run's kNN graph came from the approximate index).
    random_state : int

    Attributes
    ----------
    evidence_ : float array, shape (n, len(EVIDENCE))
        Per row: annotated rows scored as in-scope traffic (leave-one-out / out of fold),
        unannotated rows against every annotated one.
    scores_ : float array, shape (n,)
        0..1, higher = more likely out of scope.
    fpr_ : float array, shape (n,)
        Estimated share of in-scope traffic scoring at or above each row.
    threshold_ : float
        Lowest score whose estimated false-positive rate is at most ``target_fpr``.
    candidates_ : bool array, shape (n,)
    tpr_ : float
        Share of the pseudo out-of-scope rows (held-out intents) at or above the threshold.
    fpr_at_threshold_ : float
        Share of the in-scope calibration rows at or above the threshold.
    calibration_scores_ : (in_scope, pseudo_oos, pseudo_oos_class) arrays
        The held-out rows' scores (what the false-positive rate and recall are read from).
    nearest_ : int array, shape (n,)
        Row number of each row's most similar other annotated row (-1: none).
    nearest_similarity_ : float array, shape (n,)
    """

    def __init__(self, k: int = 10, n_folds: int = 5, target_fpr: float = 0.05, classifier: Any = None,
                 use_unannotated_share: bool = True, max_calibration_rows: int | None = 20_000,
                 two_hops: bool = False, random_state: int = 0) -> None:
        self.k = k
        self.n_folds = n_folds
        self.target_fpr = target_fpr
        self.classifier = classifier
        self.use_unannotated_share = use_unannotated_share
        self.max_calibration_rows = max_calibration_rows
        self.two_hops = two_hops
        self.random_state = random_state

    def _columns(self) -> list[int]:
        cols = [0, 1, 2, 3, 4]
        if self.classifier is not None:
            cols += [5, 6]
        if self.use_unannotated_share:
            cols.append(7)
        return cols

    def fit(self, X: Any, y: Any, *, graph: tuple[np.ndarray, np.ndarray] | None = None) -> OutOfScopeDetector:
        """Score every row of ``X`` (``y``: class index per row, -1 when unannotated)."""
        from hl_debug.scoring.label_issues import default_classifier

        X = np.ascontiguousarray(X, dtype=np.float32)
        y = np.asarray(y, dtype=np.int64)
        if X.ndim != 2 or len(X) != len(y):
            raise ValueError(f"X must be (n, dim) with one label per row; got {X.shape} and {y.shape}")
        if not 0 < self.target_fpr < 1:
            raise ValueError(f"target_fpr must be in (0, 1), got {self.target_fpr}")
        clf = default_classifier() if isinstance(self.classifier, str) else self.classifier
        rng = np.random.default_rng(self.random_state)
        annotated = np.flatnonzero(y >= 0)
        classes = np.unique(y[annotated])
        if len(classes) < 2:
            raise ValueError("out-of-scope scoring needs at least two annotated intents")
        folds = min(self.n_folds, len(classes))
        class_fold = np.empty(classes.max() + 1, dtype=np.int64)
        class_fold[classes] = rng.permutation(np.arange(len(classes)) % folds)
        intent_fold = class_fold[y[annotated]]
        row_fold = rng.permutation(np.arange(len(annotated)) % folds)
        cap = self.max_calibration_rows
        if cap is not None and (int(cap) != cap or cap < 1):
            raise ValueError(f"max_calibration_rows must be a positive whole number or None, got {cap!r}")
        if cap is not None and len(annotated) > cap:
            intent_fold = np.where(_proportional_sample(y[annotated], int(cap), rng), intent_fold, -1)
        with limit_threads(1):  # see hl_debug.threads: small BLAS calls, oversubscribed cores
            self._fit(X, y, clf, annotated, classes, class_fold, intent_fold, row_fold, folds, graph)
        return self

    def _fit(self, X: np.ndarray, y: np.ndarray, clf: Any, annotated: np.ndarray, classes: np.ndarray,
             class_fold: np.ndarray, intent_fold: np.ndarray, row_fold: np.ndarray, folds: int,
             graph: tuple[np.ndarray, np.ndarray] | None) -> None:
        n = len(X)
        none = np.array([], dtype=np.int64)
        gauss = SharedGaussians(X, y)
        evidence = np.full((n, len(EVIDENCE)), np.nan)
        pseudo = np.full((len(annotated), len(EVIDENCE)), np.nan)
        dropped = np.zeros(n, dtype=bool)
        # the passes below find every row's nearest annotated row on the way (in scope: every
        # intent known, the row itself never returned); with the two-hop search (an approximate
        # graph) those are the answer, sparing a last exact pass for the rows the graph lists none
        # of (at 1M: ~25k rows x 917k); on an exact graph the last pass stays as it was
        near = np.full(n, -1, dtype=np.int64)
        for f in range(folds):
            # in scope: the fold's rows, every intent known, the rows themselves left out
            part = np.flatnonzero(row_fold == f)
            dropped[:] = False
            dropped[annotated[part]] = True
            found = np.empty(len(part), dtype=np.int64)
            evidence[annotated[part]] = oos_evidence(X, y, annotated[part], excluded=none, k=self.k, gaussians=gauss,
                                                     graph=graph, classifier=clf, two_hops=self.two_hops,
                                                     dropped=dropped, dropped_key=f, nearest=found)
            near[annotated[part]] = found
            # pseudo out of scope: the fold's intents do not exist
            held = np.flatnonzero(intent_fold == f)
            pseudo[held] = oos_evidence(X, y, annotated[held], excluded=classes[class_fold[classes] == f], k=self.k,
                                        gaussians=gauss, graph=graph, classifier=clf, two_hops=self.two_hops)
        unannotated = np.flatnonzero(y < 0)
        if len(unannotated):
            found = np.empty(len(unannotated), dtype=np.int64)
            evidence[unannotated] = oos_evidence(X, y, unannotated, excluded=none, k=self.k, gaussians=gauss,
                                                 graph=graph, classifier=clf, two_hops=self.two_hops, nearest=found)
            near[unannotated] = found
        cols = self._columns()
        inside = _features(evidence[annotated], cols)
        outside = _features(pseudo, cols)
        ok_in, ok_out = np.isfinite(inside).all(axis=1), np.isfinite(outside).all(axis=1)
        F = np.vstack([inside[ok_in], outside[ok_out]])
        target = np.r_[np.zeros(ok_in.sum()), np.ones(ok_out.sum())]
        self.combiner_ = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, class_weight="balanced"))
        self.combiner_.fit(F, target)
        self.columns_ = [EVIDENCE[c] for c in cols]

        all_features = _features(evidence, cols)
        finite = np.isfinite(all_features).all(axis=1)
        scores = np.ones(n)  # a row with no usable evidence fits nothing known
        scores[finite] = self.combiner_.predict_proba(all_features[finite])[:, 1]
        cal_in = scores[annotated]
        cal_out = np.full(len(annotated), np.nan)
        cal_out[ok_out] = self.combiner_.predict_proba(outside[ok_out])[:, 1]
        self.calibration_scores_ = (cal_in, cal_out[ok_out], y[annotated][ok_out])
        ref = np.sort(cal_in)
        self.fpr_ = 1.0 - np.searchsorted(ref, scores, side="left") / len(ref)
        # the lowest score whose share of in-scope rows at or above it is <= target
        allowed = int(np.floor(self.target_fpr * len(ref)))
        self.threshold_ = float(ref[len(ref) - allowed]) if allowed > 0 else float(np.nextafter(ref[-1], np.inf))
        if allowed > 0 and allowed < len(ref) and ref[len(ref) - allowed - 1] == self.threshold_:
            self.threshold_ = float(np.nextafter(self.threshold_, np.inf))  # ties would push it over the target
        self.candidates_ = scores >= self.threshold_
        self.tpr_ = float(np.mean(cal_out[ok_out] >= self.threshold_)) if ok_out.any() else float("nan")
        self.fpr_at_threshold_ = float(np.mean(cal_in >= self.threshold_))
        self.scores_ = scores
        self.evidence_ = evidence
        if self.two_hops:
            self.nearest_, self.nearest_similarity_ = near, np.where(near >= 0, evidence[:, 0], np.nan)
        else:
            _, self.nearest_similarity_, self.nearest_ = top_k_known(X, np.arange(n), y >= 0, 1, graph=graph)


def estimate_share(candidate: np.ndarray, *, tpr: float, fpr: float, cal_in: np.ndarray, cal_out: np.ndarray,
                   cal_out_groups: np.ndarray, threshold: float, n_boot: int = 500,
                   random_state: int = 0) -> tuple[float, float, float]:
    """Share of out-of-scope rows among ``candidate`` (a bool per unannotated row), corrected for
    the false-positive rate and recall: ``(p - fpr) / (tpr - fpr)`` clipped to [0, 1], with a
    95% bootstrap interval (rows resampled for ``p`` and ``fpr``, held-out intents for ``tpr``).
    """
    candidate = np.asarray(candidate, dtype=bool)
    if not len(candidate) or not tpr > fpr:
        return float("nan"), float("nan"), float("nan")

    def corrected(p: np.ndarray, f: np.ndarray, t: np.ndarray) -> np.ndarray:
        return np.clip((p - f) / np.maximum(t - f, _EPS), 0.0, 1.0)

    share = float(corrected(np.array(candidate.mean()), np.array(fpr), np.array(tpr)))
    rng = np.random.default_rng(random_state)
    p = rng.binomial(len(candidate), candidate.mean(), n_boot) / len(candidate)
    f = rng.binomial(len(cal_in), np.mean(cal_in >= threshold), n_boot) / len(cal_in)
    groups = np.unique(cal_out_groups)
    hits = np.array([np.sum(cal_out[cal_out_groups == g] >= threshold) for g in groups], dtype=float)
    sizes = np.array([np.sum(cal_out_groups == g) for g in groups], dtype=float)
    pick = rng.integers(0, len(groups), (n_boot, len(groups)))
    t = hits[pick].sum(axis=1) / np.maximum(sizes[pick].sum(axis=1), 1)
    boot = corrected(p, f, t)
    return share, float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))
