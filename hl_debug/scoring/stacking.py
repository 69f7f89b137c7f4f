"""Stacking the label-issue evidence: learn, per dataset, how to combine it.

Each piece of evidence (out-of-fold classifier probabilities, the neighbours' labels, the
cluster's labels, the prediction API's answer) gives a few *component* scores per row
(:func:`component_scores`: the given label's log-odds and its margin to the best other
label). Which of them matters most depends on the data — a classifier that is strong on
many fine-grained intents beats the neighbours there; the neighbours win on a small export
— so no fixed blend is right everywhere. :class:`StackedScore` learns the combination on
*synthetic* flips (rows whose label the detector flipped itself, so their status is known):
a logistic regression over the components shrunk towards cleanlab's self-confidence
(:class:`~hl_debug.scoring.stackers.AnchoredLogisticRegression`: the other evidence enters
as far as the synthetic flips support it), validated out of fold. Whether to combine at all
is asked of the free (unshrunk) combination: it is kept unless a single component beats it
on every kind of synthetic flip by more than the synthetic sample's noise
(:func:`robust_choice`; the components include cleanlab's self-confidence ranking). The
chosen score is then Platt-calibrated into P(label wrong).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score
from sklearn.model_selection import StratifiedKFold

from hl_debug.scoring.stackers import default_meta_model, free_meta_model

#: Component scores, in column order; the last two only when clusters / API answers are given.
BASE_COMPONENTS = ("self_confidence", "normalized_margin", "knn_agreement", "knn_margin",
                   "ensemble_self_confidence", "ensemble_margin")
OPTIONAL_COMPONENTS = ("cluster_margin", "api_margin")


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def _given_and_margin(labels: np.ndarray, P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rows = np.arange(len(labels))
    given = P[rows, labels]
    Q = P.copy()
    Q[rows, labels] = -np.inf
    return given, given - Q.max(axis=1)


def component_scores(labels: Any, pred_probs: Any, knn_probs: Any, *, cluster_probs: Any = None,
                     api_probs: Any = None) -> tuple[list[str], np.ndarray]:
    """Every component score of every row, higher = more likely mislabelled.

    Parameters
    ----------
    labels : int array, shape (n,)
    pred_probs, knn_probs : arrays, shape (n, n_classes)
        Out-of-fold classifier probabilities; neighbour label distribution.
    cluster_probs, api_probs : arrays, shape (n, n_classes), optional
        Cluster label distribution and API answer as a distribution; NaN rows = no evidence
        (their margin component is 0, "no opinion").

    Returns
    -------
    names : list of str
        :data:`BASE_COMPONENTS` then the optional ones given.
    scores : array, shape (n, len(names))
        Minus the given label's log-odds (``*_self_confidence``, ``knn_agreement``) or minus
        its margin to the best other label (``*_margin``). Absolute values, not ranks, so a
        combination learnt on synthetic flips transfers to the real labels.
    """
    y = np.asarray(labels, dtype=np.int64)
    P, Q = np.asarray(pred_probs, dtype=np.float64), np.asarray(knn_probs, dtype=np.float64)
    members = [P, Q]
    optional: list[tuple[str, np.ndarray]] = []
    for name, D in (("cluster_margin", cluster_probs), ("api_margin", api_probs)):
        if D is not None:
            D = np.asarray(D, dtype=np.float64)
            members.append(D)
            optional.append((name, D))
    stack = np.stack(members)
    E = np.nanmean(stack, axis=0) if np.isnan(stack).any() else stack.mean(axis=0)
    E /= E.sum(axis=1, keepdims=True)
    cols, names = [], list(BASE_COMPONENTS)
    for D in (P, Q, E):
        given, margin = _given_and_margin(y, D)
        cols += [-_logit(given), -margin]
    for name, D in optional:
        has = ~np.isnan(D).any(axis=1)
        _, margin = _given_and_margin(y, np.nan_to_num(D, nan=0.0))
        cols.append(np.where(has, -margin, 0.0))
        names.append(name)
    return names, np.column_stack(cols)


def mixture_priors(proba: np.ndarray, train_priors: np.ndarray, *, tol: float = 1e-7, max_iter: int = 500,
                   max_error: float = 0.5) -> np.ndarray:
    """EM estimate of the class priors of unlabelled rows (Saerens et al., 2002).

    ``proba`` (n, c) are a classifier's posteriors under ``train_priors`` (c,); class 0 is
    "clean". Returns the priors (c,) at which the prior-adjusted posteriors' mean equals
    the priors, the error share (1 - prior of class 0) capped at ``max_error``.
    """
    ratio = np.ascontiguousarray(proba / train_priors)
    priors = train_priors.copy()
    n = len(ratio)
    for _ in range(max_iter):
        # mean over rows of ratio * priors / (ratio @ priors), as two matrix-vector products
        new = np.clip(priors * (ratio.T @ (1.0 / (ratio @ priors))) / n, 1e-6, None)
        if new[0] < 1 - max_error:
            new[1:] *= max_error / new[1:].sum()
            new[0] = 1 - max_error
        new /= new.sum()
        if np.abs(new - priors).max() < tol:
            return new
        priors = new
    return priors


def _auprc_by_kind(candidates: dict[str, np.ndarray], k: np.ndarray, sw: np.ndarray,
                   rows: np.ndarray | None = None) -> dict[int, dict[str, float]]:
    """Weighted AUPRC of every candidate on each kind's set (the unflipped rows and that
    kind's flips), over ``rows`` (a bootstrap resample) or every row."""
    rows = np.arange(len(k)) if rows is None else rows
    kr, wr = k[rows], sw[rows]
    out = {}
    for c in np.unique(k[k > 0]):
        s = (kr == 0) | (kr == c)
        out[int(c)] = {name: float(average_precision_score(kr[s] == c, v[rows][s], sample_weight=wr[s]))
                       for name, v in candidates.items()}
    return out


def robust_choice(candidates: dict[str, np.ndarray], kinds: np.ndarray, sample_weight: np.ndarray, *,
                  n_bootstrap: int = 20, random_state: int = 0) -> tuple[str, dict[int, dict[str, float]]]:
    """The score to rank by: ``"stack"`` unless a single component beats it on *every* kind of
    synthetic flip by more than twice the bootstrap spread of the difference.

    Choosing the best AUPRC on the mix of kinds picked a component that won the synthetic
    rows by 0.001-0.003 and lost the real ones by 0.02 (the bundled export): a difference
    within the synthetic sample's noise says nothing. The stack holds every component, so
    it is kept unless the evidence against it is clear on each kind of mistake the data may
    hold (uniform and the data's own flip pattern). ``self_confidence`` (minus the logit of
    the given label's out-of-fold probability) ranks exactly as cleanlab's self-confidence,
    so cleanlab's ranking is always one of the candidates.

    Returns the choice and ``{kind: {candidate: AUPRC}}``.
    """
    by_kind = _auprc_by_kind(candidates, kinds, sample_weight)
    ahead = [name for name in candidates if name != "stack"
             and all(a[name] > a["stack"] for a in by_kind.values())]
    if not ahead:
        return "stack", by_kind
    rng = np.random.default_rng(random_state)
    boots = [_auprc_by_kind({n: candidates[n] for n in ["stack", *ahead]}, kinds, sample_weight,
                            rng.integers(0, len(kinds), len(kinds))) for _ in range(n_bootstrap)]
    best, best_margin = "stack", 0.0
    for name in ahead:
        margin = float(min(by_kind[c][name] - by_kind[c]["stack"]
                           - 2 * np.std([b[c][name] - b[c]["stack"] for b in boots], ddof=1) for c in by_kind))
        if margin > best_margin:
            best, best_margin = name, margin
    return best, by_kind


def _adapted(proba: np.ndarray, train_priors: np.ndarray, priors: np.ndarray) -> np.ndarray:
    post = proba / train_priors * priors
    return 1.0 - post[:, 0] / post.sum(axis=1)


def _adapted_log_odds(proba: np.ndarray, train_priors: np.ndarray, priors: np.ndarray) -> np.ndarray:
    """The log-odds of :func:`_adapted`, computed without forming 1 - p: a score that keeps
    the order of the surest rows (clipping the posterior to 1 - 1e-4 tied them, and cost the
    ranking up to 0.01 AUPRC on the benchmark)."""
    post = proba / train_priors * priors
    tiny = np.finfo(np.float64).tiny
    return np.log(np.maximum(post[:, 1:].sum(axis=1), tiny)) - np.log(np.maximum(post[:, 0], tiny))


class StackedScore(BaseEstimator):
    """Combine component scores by stacking on synthetic flips, never below the best component.

    Synthetic rows come in kinds: 0 = not flipped, 1.. = flipped by one noise model each
    (say uniform, and the data's own estimated flip pattern). A multinomial meta model learns
    P(kind | components); on the real rows EM (:func:`mixture_priors`) estimates how much of
    each kind of mistake the data holds, and the stacked posterior P(wrong) is adapted to
    those priors — so the combination follows the data's own kind of noise. The safeguard
    (:func:`robust_choice`) compares the free stacked score (``guard_model``) with every single
    component on each kind of synthetic flip, out of fold: the stack (``meta_model``, shrunk
    towards self-confidence) is the score unless a component (cleanlab's
    self-confidence among them) beats it on every kind by more than twice the bootstrap
    spread. A single component is calibrated by a (weighted) logistic regression and its
    prior found by EM.

    Parameters
    ----------
    meta_model : sklearn classifier, optional
        Default :func:`~hl_debug.scoring.stackers.default_meta_model`; needs ``predict_proba``.
    guard_model : sklearn classifier, optional
        The combination :func:`robust_choice` weighs against the single components (default:
        ``meta_model`` when given, else :func:`~hl_debug.scoring.stackers.free_meta_model`).
    n_splits : int
        Folds of the out-of-fold validation of the stacked score.
    n_bootstrap : int
        Refits on bootstrap resamples of the synthetic rows, for the spread of the estimated
        number of errors (:attr:`totals_`).
    check_counts : bool
        Check the estimated count on synthetic sets at the estimated error rate
        (:attr:`count_errors_`; empty when False, as in the detector's intermediate refits).
    random_state : int

    Attributes
    ----------
    names_ : list of str                 component names (columns of the inputs)
    train_priors_ : array (c,)           kind shares of the synthetic rows
    priors_ : array (c,)                 estimated kind shares of the real rows
    synthetic_auprc_ : dict              name -> weighted out-of-fold AUPRC on the synthetic
                                         rows (``"stack"`` and every component)
    synthetic_auprc_by_kind_ : dict      kind -> name -> AUPRC on that kind's flips
                                         (:func:`robust_choice`; ``"stack"``: the free one)
    choice_ : str                        ``"stack"`` or the component used as the score
    scores_ : array (n,)                 the real rows' chosen score (higher = more suspicious)
    posterior_ : array (n,)              the real rows' P(label wrong)
    noise_rate_ : float                  estimated share of real rows with a wrong label
    totals_ : list of float              bootstrap estimates of the number of errors
    count_errors_ : dict                 kind -> relative error of the estimated count on a
                                         synthetic set at the estimated error rate
    """

    def __init__(self, *, meta_model: Any = None, guard_model: Any = None, n_splits: int = 5,
                 n_bootstrap: int = 20, check_counts: bool = True, random_state: int = 0) -> None:
        self.meta_model = meta_model
        self.guard_model = guard_model
        self.n_splits = n_splits
        self.n_bootstrap = n_bootstrap
        self.check_counts = check_counts
        self.random_state = random_state

    def fit(self, synthetic: Any, kinds: Any, real: Any, *, names: list[str],
            sample_weight: Any = None) -> StackedScore:
        """Learn on ``synthetic`` (m, n_components) rows of ``kinds`` (m,; 0 = not flipped)
        and score the ``real`` (n, n_components) rows. ``sample_weight`` (m,) down-weights
        synthetic rows whose status is doubtful (an unflipped row that is a real mistake)."""
        F, R = np.asarray(synthetic, dtype=np.float64), np.asarray(real, dtype=np.float64)
        k = np.asarray(kinds).astype(int)
        if F.ndim != 2 or F.shape != (len(k), len(names)) or R.ndim != 2 or R.shape[1] != len(names):
            raise ValueError(f"synthetic must have shape ({len(k)}, {len(names)}) and real (n, {len(names)}), "
                             f"got {F.shape} and {R.shape}")
        if (k == 0).all() or not (k == 0).any():
            raise ValueError("stacking needs synthetic rows of both kinds (flipped and not)")
        self.names_ = list(names)
        self.kinds_ = np.unique(k)
        sw = np.ones(len(k)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        keep = sw > 0
        F, k, sw = F[keep], k[keep], sw[keep]
        meta, oof = self._meta(F, k, sw, oof=True)
        guard = oof if self.guard_model is None and self.meta_model is not None else \
            self._meta(F, k, sw, oof=True, model=self._guard())[1]
        assert oof is not None and guard is not None  # asked for with oof=True
        self.train_priors_ = np.array([sw[k == c].sum() for c in self.kinds_]) / sw.sum()
        self.priors_ = mixture_priors(meta.predict_proba(R), self.train_priors_)
        w = self._weights(k, sw, self.priors_)
        t = (k > 0).astype(int)
        stack_oof = _adapted(oof, self.train_priors_, self.priors_)
        candidates = {"stack": stack_oof, **{name: F[:, j] for j, name in enumerate(self.names_)}}
        self.synthetic_auprc_ = {name: float(average_precision_score(t, s, sample_weight=w))
                                 for name, s in candidates.items()}
        # Whether to combine at all is asked of the free combination: measured on synthetic
        # flips weighted by the detector's own posterior, components that resemble it look
        # better than they rank real mistakes, and the shrunk stack would lose to them.
        guard_oof = _adapted(guard, self.train_priors_, self.priors_)
        self.choice_, self.synthetic_auprc_by_kind_ = robust_choice({**candidates, "stack": guard_oof}, k, sw,
                                                                    random_state=self.random_state)
        self.scores_, self.posterior_ = self._score(meta, F, k, w, R)
        self.noise_rate_ = float(self.posterior_.mean())
        self.count_errors_ = self._count_errors(meta_oof=oof, F=F, k=k, sw=sw) if self.check_counts else {}
        rng = np.random.default_rng(self.random_state)
        self.totals_ = []
        for _ in range(self.n_bootstrap):
            b = rng.integers(0, len(k), len(k))
            if len(np.unique(k[b])) != len(self.kinds_):
                continue
            meta_b, _ = self._meta(F[b], k[b], sw[b], oof=False)
            w_b = self._weights(k[b], sw[b], self.priors_)
            self.totals_.append(float(self._score(meta_b, F[b], k[b], w_b, R)[1].sum()))
        return self

    def _guard(self) -> Any:
        model = self.guard_model if self.guard_model is not None else self.meta_model
        return clone(model) if model is not None else free_meta_model()

    def _meta(self, F: np.ndarray, k: np.ndarray, sw: np.ndarray, *, oof: bool,
              model: Any = None) -> tuple[Any, np.ndarray | None]:
        if model is None:
            model = clone(self.meta_model) if self.meta_model is not None else default_meta_model()
        meta = model

        def fit(model: Any, rows: Any) -> Any:
            key = f"{model.steps[-1][0]}__sample_weight" if hasattr(model, "steps") else "sample_weight"
            return model.fit(F[rows], k[rows], **{key: sw[rows]})

        out = None
        if oof:
            splits = int(min(self.n_splits, np.bincount(k).min()))
            out = np.zeros((len(k), len(self.kinds_)))
            if splits >= 2:
                cv = StratifiedKFold(n_splits=splits, shuffle=True, random_state=self.random_state)
                for train, test in cv.split(F, k):
                    out[test] = fit(clone(meta), train).predict_proba(F[test])
        fit(meta, slice(None))
        if oof and splits < 2:
            out = meta.predict_proba(F)
        return meta, out

    def _count_errors(self, *, meta_oof: np.ndarray, F: np.ndarray, k: np.ndarray, sw: np.ndarray,
                      n_draws: int = 5) -> dict[int, float]:
        """Relative error of the estimated count on synthetic sets built like the real data:
        the unflipped rows (weight >= 0.5) plus one kind's flips drawn at the estimated real
        error rate, scored out of fold by the chosen calibration and counted by the same EM.
        A check of the calibration (and of the EM at a low rate) that widens the interval of
        the count (:attr:`count_errors_`); it cannot see a mismatch between the synthetic
        flips and the real mistakes."""
        if self.choice_ == "stack":
            proba, priors = meta_oof, self.train_priors_
        else:
            j = self.names_.index(self.choice_)
            proba = self.calibrator_.predict_proba(F[:, [j]])
            priors = np.array([1 - self.component_prior_, self.component_prior_])
        rng = np.random.default_rng(self.random_state)
        clean = np.flatnonzero((k == 0) & (sw >= 0.5))
        rho = float(np.clip(self.noise_rate_, 1e-3, 0.5))
        out = {}
        for c in np.unique(k[k > 0]):
            flips = np.flatnonzero(k == c)
            m = int(min(len(flips), max(1, round(rho / (1 - rho) * len(clean)))))
            errs = []
            for _ in range(n_draws):
                rows = np.concatenate([clean, rng.choice(flips, m, replace=False)])
                est = _adapted(proba[rows], priors, mixture_priors(proba[rows], priors)).sum()
                errs.append(est / m - 1.0)
            out[int(c)] = float(np.mean(errs))
        return out

    @staticmethod
    def _weights(k: np.ndarray, sw: np.ndarray, priors: np.ndarray) -> np.ndarray:
        """``sw`` reweighted so the synthetic flips have the estimated real mix of kinds."""
        kinds = np.unique(k)
        n_err = sw[k > 0].sum()
        mix = priors[1:] / priors[1:].sum()
        w = sw.copy()
        for c, share in zip(kinds[1:], mix):
            w[k == c] *= share * n_err / max(sw[k == c].sum(), 1e-12)
        return w

    def _score(self, meta: Any, F: np.ndarray, k: np.ndarray, w: np.ndarray,
               R: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(score, posterior) of the real rows under the chosen combination."""
        if self.choice_ == "stack":
            priors = mixture_priors(meta.predict_proba(R), self.train_priors_)
            post = _adapted(meta.predict_proba(R), self.train_priors_, priors)
            return _adapted_log_odds(meta.predict_proba(R), self.train_priors_, priors), post
        j = self.names_.index(self.choice_)
        t = (k > 0).astype(int)
        cal = LogisticRegression(C=100.0).fit(F[:, [j]], t, sample_weight=w)
        prior = float(np.average(t, weights=w))
        self.calibrator_, self.component_prior_ = cal, prior
        proba = cal.predict_proba(R[:, [j]])
        two = np.array([1 - prior, prior])
        post = _adapted(proba, two, mixture_priors(proba, two))
        return R[:, j], post
