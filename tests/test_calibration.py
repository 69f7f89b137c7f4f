"""SigmoidCalibratedCV computes scikit-learn's sigmoid CalibratedClassifierCV, sigmoids fitted at once."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.calibration import CalibratedClassifierCV, _sigmoid_calibration
from sklearn.linear_model import LogisticRegression

from hl_debug.models.calibration import SigmoidCalibratedCV, platt_sigmoids
from hl_debug.threads import limit_threads


def overlapping(n: int = 240, K: int = 6, dim: int = 8, seed: int = 0):
    """K overlapping Gaussian classes (so calibration has something to do): X (n, dim), y (n,)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(K, dim))
    y = np.arange(n) % K
    X = (centers[y] + 1.2 * rng.normal(size=(n, dim))).astype(np.float32)
    return X, np.array([f"i{k}" for k in y])


@pytest.mark.parametrize("scale", [1.0, 80.0])  # 80: decision values above 30 are rescaled
def test_platt_sigmoids_match_scikit_learn_per_column(scale):
    rng = np.random.default_rng(1)
    F = rng.normal(size=(300, 4)) * scale
    Y = (F + rng.normal(size=F.shape) * scale) > 0.5 * scale
    a, b = platt_sigmoids(F, Y)
    for j in range(F.shape[1]):
        a_ref, b_ref = _sigmoid_calibration(F[:, j], Y[:, j].astype(float))
        assert a[j] == pytest.approx(a_ref, rel=1e-3, abs=1e-4)
        assert b[j] == pytest.approx(b_ref, rel=1e-3, abs=1e-4)


def test_platt_sigmoids_reject_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        platt_sigmoids(np.zeros((3, 2)), np.zeros((3, 1), dtype=bool))


@pytest.mark.parametrize("cv", [3, 5])
def test_same_probabilities_as_calibrated_classifier_cv(cv):
    X, y = overlapping()
    base = LogisticRegression(C=10.0, max_iter=2000)
    with limit_threads(1):
        ref = CalibratedClassifierCV(base, method="sigmoid", cv=cv).fit(X, y)
        ours = SigmoidCalibratedCV(base, cv=cv).fit(X, y)
        P_ref, P = ref.predict_proba(X), ours.predict_proba(X)
    assert list(ours.classes_) == list(ref.classes_)
    assert len(ours.estimators_) == cv
    np.testing.assert_allclose(P, P_ref, atol=2e-3)
    np.testing.assert_allclose(P.sum(axis=1), 1.0)
    assert (ours.predict(X) == ref.predict(X)).mean() >= 0.99


def test_needs_three_classes_and_cv_rows_per_class():
    X, y = overlapping(K=2)
    with pytest.raises(ValueError, match="three classes"):
        SigmoidCalibratedCV(LogisticRegression()).fit(X, y)
    X, y = overlapping(n=12, K=3)
    with pytest.raises(ValueError, match="cv=5"):
        SigmoidCalibratedCV(LogisticRegression(), cv=5).fit(X, y)


def test_platt_sigmoids_fit_the_intercept_alone_for_constant_decision_values():
    Y = np.zeros((200, 1), dtype=bool)
    Y[:30] = True
    a, b = platt_sigmoids(np.zeros((200, 1)), Y, max_iter=20)
    a_ref, b_ref = _sigmoid_calibration(np.zeros(200), Y[:, 0].astype(float))
    assert a[0] == 0.0 and a_ref == pytest.approx(0.0, abs=1e-6)
    assert b[0] == pytest.approx(b_ref, abs=1e-4)
