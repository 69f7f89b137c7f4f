"""The stacker's models (:class:`~hl_debug.scoring.stacking.StackedScore`): the combination
of the component scores used as the score, shrunk towards cleanlab's self-confidence, and
the free combination the safeguard tests."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


class AnchoredLogisticRegression(ClassifierMixin, BaseEstimator):
    """A (multinomial) logistic regression over standardised components, shrunk towards one
    of them: the ``anchor`` column (cleanlab's self-confidence) is all but unpenalised, the
    others carry an L2 penalty of ``1 / C`` — a prior that the other evidence adds nothing,
    which the synthetic flips overcome only as far as they support it. The penalty is fixed
    while the data term grows with the synthetic rows, so a small export (a few hundred
    flips) stays near self-confidence and a large one learns its own combination. An
    unshrunk stack (``C=1``, every column alike) ranked the bundled export's planted flips
    0.0015-0.0025 AUPRC below self-confidence on three seeds: weights learnt from 200 flips
    are noisy where self-confidence is already nearly exact.

    Parameters
    ----------
    anchor : int             column the prior is centred on (0: ``self_confidence``)
    C : float                inverse penalty of the other columns (standardised)
    anchor_scale : float     the anchor column is multiplied by this after standardising,
                             so its penalty is ``1 / anchor_scale**2`` of the others'
    solver, tol : str, float scikit-learn's. Newton steps suit the problem: a handful of
                             columns, one of them scaled x30, is ill-conditioned for lbfgs,
                             which stopped 200-400 iterations in with probabilities up to
                             0.06 from the optimum; ``newton-cholesky`` reaches it (within
                             1e-4) in ~11 iterations, 6x faster (``benchmarks/RESULTS.md``)
    max_iter : int
    """

    def __init__(self, *, anchor: int = 0, C: float = 0.03, anchor_scale: float = 30.0,
                 solver: str = "newton-cholesky", tol: float = 1e-7, max_iter: int = 2000) -> None:
        self.anchor = anchor
        self.C = C
        self.anchor_scale = anchor_scale
        self.solver = solver
        self.tol = tol
        self.max_iter = max_iter

    def _design(self, X: Any) -> np.ndarray:
        Z = self.scaler_.transform(np.asarray(X, dtype=np.float64))
        Z[:, self.anchor] *= self.anchor_scale
        return Z

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> AnchoredLogisticRegression:
        self.scaler_ = StandardScaler().fit(np.asarray(X, dtype=np.float64))
        self.model_ = LogisticRegression(C=self.C, solver=self.solver, tol=self.tol,
                                         max_iter=self.max_iter).fit(self._design(X), y, sample_weight=sample_weight)
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        return self.model_.predict_proba(self._design(X))


def default_meta_model() -> Any:
    """The stacker: :class:`AnchoredLogisticRegression`, shrunk towards self-confidence."""
    return AnchoredLogisticRegression()


def free_meta_model() -> Any:
    """The combination the safeguard tests: standardised components into an unshrunk
    (multinomial) logistic regression, the most a linear combination gives."""
    return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))
