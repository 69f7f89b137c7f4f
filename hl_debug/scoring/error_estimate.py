"""From calibrated posteriors to honest counts: the real error rate, the flag threshold, and
the flagged list's estimated precision and recall.

The label-issue calibrator learns P(wrong | score) on synthetic flips, whose share is the
detector's own choice, not the data's error rate. :func:`em_prior` re-estimates the real
rate from the posteriors themselves (the EM of Saerens, Latinne & Decaestecker, 2002: shift
the posteriors to a prior, take their mean as the next prior, repeat), so the sum of the
shifted posteriors is an estimate of the number of label errors. :func:`flag_threshold`
then picks the flags that maximise the expected F1 against that total (or reach a target
precision), and :func:`flag_summary` states the flagged list's expected precision and
recall.
"""

from __future__ import annotations

from typing import Any

import numpy as np


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


def em_prior(posterior: Any, *, from_prior: float, lower: float = 1e-4, upper: float = 0.5, tol: float = 1e-7,
             max_iter: int = 500) -> float:
    """The error rate at which the prior-shifted posteriors' mean equals the prior (EM fixed point).

    ``posterior`` (n,) are P(wrong) under ``from_prior``; the result is clipped to
    ``[lower, upper]``.
    """
    p = np.asarray(posterior, dtype=np.float64)
    if p.size == 0:
        return lower
    prior = float(np.clip(from_prior, lower, upper))
    for _ in range(max_iter):
        new = float(np.clip(prior_shift(p, from_prior=from_prior, to_prior=prior).mean(), lower, upper))
        if abs(new - prior) < tol:
            return new
        prior = new
    return prior


def flag_threshold(posterior: Any, *, target_precision: float | None = None) -> float:
    """The posterior from which rows are flagged.

    Default: the threshold whose flagged set maximises the expected F1, ``2·E[TP] / (n_flagged
    + E[errors])`` with ``E[TP]`` the sum of the flagged posteriors and ``E[errors]`` the sum of
    all. With ``target_precision``: the lowest threshold whose flagged set's expected precision
    (mean posterior) is at least the target (1.0 + tiny when none reaches it: nothing flagged).
    """
    p = np.sort(np.asarray(posterior, dtype=np.float64))[::-1]
    if p.size == 0:
        return 1.0
    tp = np.cumsum(p)
    k = np.arange(1, len(p) + 1)
    if target_precision is not None:
        if not 0 < target_precision <= 1:
            raise ValueError(f"target_precision must be in (0, 1], got {target_precision}")
        ok = np.flatnonzero(tp / k >= target_precision - 1e-12)
        return float(p[ok[-1]]) if ok.size else float(np.nextafter(1.0, 2.0))
    f1 = 2 * tp / (k + tp[-1])
    return float(p[int(f1.argmax())])


def flag_summary(posterior: Any, flagged: Any) -> dict[str, float]:
    """Expected figures of a flagged set: ``estimated_errors`` (sum of posteriors),
    ``n_flagged``, ``estimated_precision`` (mean flagged posterior; NaN if none) and
    ``estimated_recall`` (flagged share of the expected errors; NaN if none expected)."""
    p = np.asarray(posterior, dtype=np.float64)
    f = np.asarray(flagged, dtype=bool)
    total = float(p.sum())
    return {"estimated_errors": total, "n_flagged": int(f.sum()),
            "estimated_precision": float(p[f].mean()) if f.any() else float("nan"),
            "estimated_recall": float(p[f].sum() / total) if total > 0 else float("nan")}


def error_interval(posterior: Any, totals: Any = None, *, level: float = 0.9,
                   relative_bias: float = 0.0) -> tuple[float, float]:
    """A ``level`` interval for the number of label errors.

    The Poisson-binomial spread of the count given the posteriors (normal approximation),
    widened by ``totals`` — the estimated totals of bootstrap refits of the calibrator, when
    given — as independent variances add, then on each side by ``relative_bias`` times the
    count: a systematic error of the calibration (the largest relative error of the count on
    the synthetic validation sets), which no sampling spread holds.
    """
    from scipy.stats import norm

    p = np.asarray(posterior, dtype=np.float64)
    var = float((p * (1 - p)).sum())
    if totals is not None and len(totals) > 1:
        var += float(np.var(np.asarray(totals, dtype=np.float64), ddof=1))
    z = float(norm.ppf(0.5 + level / 2))
    total = float(p.sum())
    half = z * np.sqrt(var) + abs(float(relative_bias)) * total
    return max(0.0, total - half), total + half


def shift_to_total(posterior: Any, total: float) -> np.ndarray:
    """Posteriors moved by one log-odds offset so that they sum to ``total`` (their order kept).

    How the label-issue detector anchors its posteriors to an error count estimated another
    way (the confident joint's): flags, precision and recall then follow that count.
    ``total`` must lie strictly between 0 and the number of rows.
    """
    from scipy.optimize import brentq
    from scipy.special import expit, logit

    p = np.asarray(posterior, dtype=np.float64)
    if not 0 < total < p.size:
        raise ValueError(f"total must be in (0, {p.size}), got {total}")
    z = logit(np.clip(p, 1e-12, 1 - 1e-12))
    offset = brentq(lambda a: float(expit(z + a).sum()) - total, -60.0, 60.0, xtol=1e-10)
    return expit(z + offset)
