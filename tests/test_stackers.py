"""The stacker's models: the combination shrunk towards self-confidence, and the free one."""

from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from hl_debug.scoring.stackers import AnchoredLogisticRegression, default_meta_model, free_meta_model


def _rows(n: int = 600, seed: int = 0):
    """Column 0 separates the flips (kind 1), column 1 a little, column 2 is noise."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.1).astype(int)
    X = np.column_stack([rng.normal(size=n) + 2.0 * y, rng.normal(size=n) + 1.0 * y, rng.normal(size=n)])
    return X, y


def _log_odds(model, X):
    p = model.predict_proba(X)
    return np.log(p[:, 1]) - np.log(p[:, 0])


def test_a_strong_prior_ranks_as_the_anchor():
    X, y = _rows()
    model = AnchoredLogisticRegression(C=1e-4, anchor_scale=1e4).fit(X, y)
    assert spearmanr(_log_odds(model, X), X[:, 0]).statistic > 0.9999
    coef = model.model_.coef_[0]
    assert abs(coef[0] * model.anchor_scale) > 100 * np.abs(coef[1:]).max()


def test_a_weak_prior_is_the_free_logistic_regression():
    X, y = _rows()
    model = AnchoredLogisticRegression(C=1e6, anchor_scale=1.0).fit(X, y)
    free = LogisticRegression(C=1e6, max_iter=2000).fit(StandardScaler().fit_transform(X), y)
    np.testing.assert_allclose(model.predict_proba(X), free.predict_proba(StandardScaler().fit_transform(X)),
                               atol=1e-4)


def test_the_other_evidence_enters_as_far_as_the_data_support_it():
    """The same penalty weighs less against more rows: the second column's weight grows."""
    weights = []
    for n in (200, 20_000):
        X, y = _rows(n=n, seed=1)
        weights.append(AnchoredLogisticRegression().fit(X, y).model_.coef_[0][1])
    assert 0 < weights[0] < weights[1]


def test_sample_weight_and_clone():
    X, y = _rows()
    w = np.where(y == 1, 1.0, 0.5)
    model = clone(default_meta_model()).fit(X, y, sample_weight=w)
    assert model.predict_proba(X).shape == (len(y), 2)
    assert free_meta_model().fit(X, y, logisticregression__sample_weight=w).predict_proba(X).shape == (len(y), 2)


def test_the_default_solver_reaches_the_optimum_lbfgs_stopped_short_of():
    """Three kinds, the anchor scaled x30: ill-conditioned for lbfgs at its default tolerance
    (the solver before), which stops short; the shipped Newton solver lands on the optimum
    that a much tighter lbfgs run finds."""
    rng = np.random.default_rng(2)
    n = 3000
    y = rng.choice(3, size=n, p=[0.9, 0.05, 0.05])
    X = np.column_stack([rng.normal(size=n) + 1.5 * (y > 0), rng.normal(size=n) + 1.0 * (y == 2),
                         rng.normal(size=n), rng.normal(size=n) + 0.5 * (y == 1)])
    shipped = AnchoredLogisticRegression().fit(X, y)
    tight = AnchoredLogisticRegression(solver="lbfgs", tol=1e-12, max_iter=100_000).fit(X, y)
    loose = AnchoredLogisticRegression(solver="lbfgs", tol=1e-4).fit(X, y)
    gap_shipped = np.abs(shipped.predict_proba(X) - tight.predict_proba(X)).max()
    gap_loose = np.abs(loose.predict_proba(X) - tight.predict_proba(X)).max()
    assert shipped.model_.n_iter_[0] < loose.model_.n_iter_[0]
    assert gap_shipped < 1e-5
    assert gap_shipped < gap_loose
