"""Sigmoid (Platt) calibration on cross-validation folds, all intents' sigmoids fitted at once.

:class:`SigmoidCalibratedCV` computes what scikit-learn's
``CalibratedClassifierCV(estimator, method="sigmoid", cv=k)`` (``ensemble=True``) computes for
three or more classes — the same unshuffled stratified folds, a clone of the estimator fitted
on each fold's other rows, one Platt sigmoid per intent on the fold's decision values, each
fold's sigmoids normalised and the folds averaged — but fits the sigmoids of every intent
together: Newton's method on the two parameters per intent, vectorised over intents, instead
of one scipy L-BFGS run per intent and fold. At 150 intents (a 2/3 fold of 13k rows, one thread,
load ~8) scikit-learn's 150 small optimisations took 9.1 s beside the fold's 24.8 s logistic
regression; these take 3.0 s (``benchmarks/RESULTS.md``, "The local model at many intents"). Platt's objective
is convex, so both reach the same sigmoids up to the solvers' tolerances (scikit-learn's runs
in float32 with gtol 1e-6; this one in float64 to 1e-10).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.model_selection import StratifiedKFold

#: Decision values above this (in absolute value) are rescaled before fitting, as scikit-learn does.
MAX_ABS_PREDICTION = 30.0


def platt_sigmoids(F: np.ndarray, Y: np.ndarray, *, max_iter: int = 100, gtol: float = 1e-8,
                   tol: float = 1e-10) -> tuple[np.ndarray, np.ndarray]:
    """Platt's sigmoid ``P(y=1 | f) = 1 / (1 + exp(a f + b))`` for every column of ``F`` at once.

    ``F`` (n, m) are decision values, ``Y`` (n, m) booleans: row i is a positive of column j.
    Targets are Platt's smoothed ones ((n+ + 1) / (n+ + 2) and 1 / (n- + 2)) and the start is
    ``a = 0, b = log((n- + 1) / (n+ + 1))``, as in scikit-learn. Returns ``(a, b)``, shape (m,).
    """
    F = np.asarray(F, dtype=np.float64)
    Y = np.asarray(Y, dtype=bool)
    if F.ndim != 2 or F.shape != Y.shape:
        raise ValueError(f"F and Y must be 2-D arrays of the same shape, got {F.shape} and {Y.shape}")
    scale = np.abs(F).max(axis=0, initial=0.0)
    scale = np.where(scale >= MAX_ABS_PREDICTION, scale, 1.0)
    F = F / scale
    pos = Y.sum(axis=0).astype(np.float64)
    neg = len(Y) - pos
    T = np.where(Y, (pos + 1.0) / (pos + 2.0), 1.0 / (neg + 2.0))
    a, b = np.zeros(F.shape[1]), np.log((neg + 1.0) / (pos + 1.0))

    def loss(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        z = -(a * F + b)  # the logit of P(y=1)
        return (np.logaddexp(0.0, z) - T * z).sum(axis=0)

    current = loss(a, b)
    for _ in range(max_iter):
        p = expit(-(a * F + b))
        r, w = p - T, p * (1.0 - p)
        ga, gb = -(r * F).sum(axis=0), -r.sum(axis=0)
        haa, hab, hbb = (w * F * F).sum(axis=0), (w * F).sum(axis=0), w.sum(axis=0)
        det = haa * hbb - hab * hab
        ok = det > 1e-12 * (haa * hbb + 1e-300)  # else F is (near) constant: fit the intercept alone
        da = np.where(ok, -(hbb * ga - hab * gb) / np.where(ok, det, 1.0), 0.0)
        db = np.where(ok, -(haa * gb - hab * ga) / np.where(ok, det, 1.0), -gb / np.maximum(hbb, 1e-300))
        if max(np.abs(ga).max(), np.abs(gb).max()) < gtol or np.max(np.abs(da) + np.abs(db)) < tol:
            break  # converged: the gradient (scikit-learn stops at 1e-6) or the Newton step is tiny
        step = np.ones_like(a)
        new = loss(a + da, b + db)
        slack = 1e-12 * (1.0 + np.abs(current))  # rounding: not an increase
        for _ in range(30):  # backtracking, per column, until the loss does not increase
            worse = new > current + slack
            if not worse.any():
                break
            step = np.where(worse, step / 2, step)
            new = np.where(worse, loss(a + step * da, b + step * db), new)
        a, b, current = a + step * da, b + step * db, np.minimum(new, current)
    return a / scale, b


class SigmoidCalibratedCV(ClassifierMixin, BaseEstimator):
    """``estimator`` calibrated with Platt sigmoids on ``cv`` stratified folds (see the module).

    Parameters
    ----------
    estimator:
        An unfitted classifier with ``decision_function`` returning ``(n, n_classes)``.
    cv:
        Folds (unshuffled :class:`~sklearn.model_selection.StratifiedKFold`); every intent needs
        at least ``cv`` rows, and there must be at least three intents.

    Attributes
    ----------
    classes_ : ndarray, shape (n_classes,)
    estimators_ : list of the fold's fitted estimators
    columns_ : list of int arrays: each estimator's classes as indices into ``classes_``
    a_, b_ : list of float arrays: each fold's sigmoids, one per estimator class
    """

    def __init__(self, estimator: Any, *, cv: int = 5) -> None:
        self.estimator = estimator
        self.cv = cv

    def fit(self, X: np.ndarray, y: Any) -> SigmoidCalibratedCV:
        X, y = np.asarray(X), np.asarray(y)
        self.classes_, codes, counts = np.unique(y, return_inverse=True, return_counts=True)
        if len(self.classes_) < 3:
            raise ValueError(f"SigmoidCalibratedCV needs at least three classes, got {len(self.classes_)}")
        if counts.min() < self.cv:
            raise ValueError(f"every class needs at least cv={self.cv} rows; the rarest has {counts.min()}")
        self.estimators_, self.columns_, self.a_, self.b_ = [], [], [], []
        for train, test in StratifiedKFold(n_splits=self.cv).split(X, codes):
            est = clone(self.estimator).fit(X[train], y[train])
            cols = np.searchsorted(self.classes_, est.classes_)
            a, b = platt_sigmoids(est.decision_function(X[test]), codes[test][:, None] == cols[None, :])
            self.estimators_.append(est)
            self.columns_.append(cols)
            self.a_.append(a)
            self.b_.append(b)
        self.n_features_in_ = X.shape[1]
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Mean over folds of the fold's normalised sigmoids, shape ``(n, n_classes)``."""
        X = np.asarray(X)
        K = len(self.classes_)
        out = np.zeros((len(X), K))
        for est, cols, a, b in zip(self.estimators_, self.columns_, self.a_, self.b_):
            P = np.zeros((len(X), K))
            P[:, cols] = expit(-(a * est.decision_function(X) + b))
            den = P.sum(axis=1, keepdims=True)
            P = np.divide(P, den, out=np.full_like(P, 1.0 / K), where=den != 0)
            P[(P > 1.0) & (P <= 1.0 + 1e-5)] = 1.0
            out += P
        return out / len(self.estimators_)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
