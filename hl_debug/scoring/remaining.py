"""Errors remaining: how many label errors are still in the data while a review goes on.

Reviewed rows are known — a row is an error found when the reviewer changed its label, and
correct when the reviewer kept it — so they leave the count. Every unreviewed row still
counts with its calibrated posterior P(label wrong) (the ``posterior`` column of the
``issues`` table), so the estimate is the sum of the unreviewed posteriors.

The decisions so far also test the calibration: the *live precision* of the reviewed rows
(errors found per decision) against what their posteriors promised. ``recalibrate=True``
shifts every posterior's log-odds by the one offset that makes the reviewed rows' posteriors
match the decisions (maximum likelihood, shrunk towards no shift, so a handful of decisions
moves it little), and sums the shifted unreviewed posteriors. The reviewed rows are the top
of the ranking, so whether that shift also holds in the tail is an empirical question —
``benchmarks/label_noise.py`` measures both on a simulated review (its last table).

``spread_total`` keeps the count's *relative* error from growing as the review goes on. The
detector anchors its posteriors to the confident joint's count by one log-odds shift
(``error_estimate.shift_to_total``), which takes the missing mass mostly from the low and
middle posteriors: the top of the ranking keeps its posteriors, so the rows a reviewer
removes first take their full share of the count and the count's deficit stays behind in the
tail. On banking77 at 5% uniform flips the estimate was 15% low at K = 0 and 28% low after
300 decisions (the same ~85 errors missing from a smaller remainder). With ``spread_total``
(the EM count the posteriors were shifted from) each row counts with its *unanchored*
posterior scaled by the anchored total over the unanchored one, ``q = p_EM * sum(p) /
spread_total``: the same count before any decision, spread over the rows as the EM fixed
point spreads it, so the reviewed rows take a proportional share of the deficit with them
and the estimate stays about as far from the truth, relatively, as the count itself
(``benchmarks/review_loop.py``: −15% → −11% at K = 300 where the shift gave −28%).

Call it like this (the ``loop`` benchmark does)::

    from hl_debug.scoring.remaining import errors_remaining
    # posterior: P(wrong) of every annotated row; reviewed: {row index: reviewer changed the label}
    out = errors_remaining(posterior, {i: bool(truth[i]) for i in reviewed_in_order}, order=reviewed_in_order)
    out["estimated"], out["low"], out["high"]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.optimize import brentq, minimize_scalar
from scipy.special import expit, logit
from scipy.stats import norm

#: The offset's prior spread (log-odds): about 30 decisions move it as much as the data says.
SHIFT_PRIOR_SD = 1.0


def log_odds_shift(posterior: Any, outcome: Any, *, prior_sd: float = SHIFT_PRIOR_SD) -> float:
    """The offset ``a`` maximising the likelihood of ``outcome`` (bool, 1 = error) under
    ``expit(logit(posterior) + a)``, with a normal prior N(0, ``prior_sd``²) on ``a``.
    0 when there is nothing to learn from."""
    p = np.clip(np.asarray(posterior, dtype=np.float64), 1e-6, 1 - 1e-6)
    y = np.asarray(outcome, dtype=np.float64)
    if p.size == 0:
        return 0.0
    z = logit(p)

    def nll(a: float) -> float:
        q = np.clip(expit(z + a), 1e-12, 1 - 1e-12)
        return float(-(y * np.log(q) + (1 - y) * np.log(1 - q)).sum() + 0.5 * (a / prior_sd) ** 2)

    return float(minimize_scalar(nll, bounds=(-8.0, 8.0), method="bounded").x)


def errors_remaining(posterior: Any, decided_wrong: Mapping[int, bool], *, order: Sequence[int] | None = None,
                     last_n: int = 50, level: float = 0.95, seed: int = 0, recalibrate: bool = False,
                     relative_bias: float = 0.0, n_bootstrap: int = 200,
                     spread_total: float | None = None) -> dict[str, Any]:
    """The estimated number of label errors not yet reviewed, with an interval.

    Parameters
    ----------
    posterior : array, shape (n,)
        Calibrated P(label wrong) of every annotated row (as scored, before the review).
    decided_wrong : mapping row index -> bool
        The reviewed rows: True when the reviewer changed the label (an error, now fixed),
        False when it was kept (correct).
    order : sequence of int, optional
        The reviewed rows in decision order (default: the mapping's order), for
        ``last_found`` ("your last N decisions found ...").
    last_n : int
        How many of the latest decisions ``last_found`` counts over.
    level : float
        Coverage of the interval.
    seed : int
        Seed of the bootstrap over the reviewed rows (``recalibrate=True``).
    recalibrate : bool
        Shift the posteriors' log-odds to match the decisions so far (see the module doc).
    relative_bias : float
        Systematic error of the calibration as a share of the estimate (e.g. the detector's
        own count interval, relative), added to each side of the interval: no sampling
        spread holds it.
    n_bootstrap : int
        Resamples of the reviewed rows for the spread of the recalibration.
    spread_total : float, optional
        The unanchored (EM) error count the posteriors were shifted from (the detector's
        ``em_estimated_errors_``): spread the count over the rows as the unanchored posteriors
        do (see the module doc; :func:`spread_posterior`). Not with ``recalibrate``.

    Returns
    -------
    dict
        ``estimated``, ``low``, ``high`` (errors remaining among the unreviewed rows),
        ``n_reviewed``, ``n_found`` (reviewed rows whose label was changed), ``n_unreviewed``,
        ``live_precision`` (``n_found / n_reviewed``; None before any decision),
        ``expected_found`` (what the posteriors promised for the reviewed rows), ``last_n``
        (decisions counted, at most ``last_n``), ``last_found``, ``shift`` (log-odds offset
        used; 0 without ``recalibrate``), ``level``, ``spread`` (``"scale"`` with
        ``spread_total``, else ``"shift"``).
    """
    p = np.asarray(posterior, dtype=np.float64)
    if p.ndim != 1 or (p.size and (np.nanmin(p) < 0 or np.nanmax(p) > 1)):
        raise ValueError(f"posterior must be a 1-D array of probabilities, got shape {p.shape}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if last_n < 1:
        raise ValueError(f"last_n must be >= 1, got {last_n}")
    p = np.nan_to_num(p, nan=0.0)
    if spread_total is not None:
        if recalibrate:
            raise ValueError("spread_total and recalibrate are alternatives: pass one of them")
        p = spread_posterior(p, spread_total)
    idx = np.fromiter(decided_wrong.keys(), dtype=np.int64, count=len(decided_wrong))
    if idx.size and (idx.min() < 0 or idx.max() >= len(p)):
        raise ValueError(f"decided_wrong holds row {int(idx.max() if idx.max() >= len(p) else idx.min())}; "
                         f"rows are 0..{len(p) - 1}")
    wrong = np.array([bool(decided_wrong[int(i)]) for i in idx], dtype=bool)
    seq = list(order) if order is not None else idx.tolist()
    missing = [i for i in seq if int(i) not in decided_wrong]
    if missing:
        raise ValueError(f"order holds row {missing[0]}, which has no decision")
    last = seq[-last_n:]
    reviewed = np.zeros(len(p), dtype=bool)
    reviewed[idx] = True
    rest = p[~reviewed]
    shift = log_odds_shift(p[idx], wrong) if recalibrate and idx.size else 0.0
    q = expit(logit(np.clip(rest, 1e-9, 1 - 1e-9)) + shift) if shift else rest
    estimated = float(q.sum())
    var = float((q * (1 - q)).sum())
    if recalibrate and idx.size >= 2 and n_bootstrap > 1:
        rng = np.random.default_rng(seed)
        z = logit(np.clip(rest, 1e-9, 1 - 1e-9))
        totals = []
        for _ in range(n_bootstrap):
            b = rng.integers(0, idx.size, idx.size)
            totals.append(float(expit(z + log_odds_shift(p[idx][b], wrong[b])).sum()))
        var += float(np.var(totals, ddof=1))
    half = float(norm.ppf(0.5 + level / 2)) * np.sqrt(var) + abs(float(relative_bias)) * estimated
    return {"estimated": estimated, "low": max(0.0, estimated - half), "high": estimated + half,
            "n_reviewed": int(idx.size), "n_found": int(wrong.sum()), "n_unreviewed": int((~reviewed).sum()),
            "live_precision": float(wrong.mean()) if idx.size else None,
            "expected_found": float(p[idx].sum()), "last_n": len(last),
            "last_found": int(sum(bool(decided_wrong[int(i)]) for i in last)), "shift": float(shift),
            "level": level, "spread": "shift" if spread_total is None else "scale"}


def spread_posterior(posterior: Any, spread_total: float) -> np.ndarray:
    """Anchored posteriors (shape (n,)) re-spread over the rows as their unanchored version
    spreads the count: the log-odds shift that makes them sum to ``spread_total`` (the EM
    count they were anchored from), then scaled back to their own sum (rows it would lift
    above 1 are capped there). The total and the order are unchanged; each row's share of
    the total is the unanchored one's."""
    p = np.asarray(posterior, dtype=np.float64)
    total = float(p.sum())
    if not np.isfinite(spread_total) or spread_total <= 0:
        raise ValueError(f"spread_total must be a positive count, got {spread_total}")
    if total <= 0 or spread_total >= p.size:
        return p.copy()
    z = logit(np.clip(p, 1e-12, 1 - 1e-12))
    offset = brentq(lambda a: float(expit(z + a).sum()) - spread_total, -60.0, 60.0, xtol=1e-10)
    q = expit(z + offset)
    # scale to ``total``; when that lifts rows above 1 (an EM count below the anchored one),
    # cap them at 1 and share what they lose among the others, so the total holds
    capped = np.zeros(q.size, dtype=bool)
    for _ in range(q.size):
        free = total - capped.sum()
        scaled = np.where(capped, 1.0, q * free / float(q[~capped].sum()))
        over = scaled > 1.0
        if not over.any():
            return scaled
        capped |= over
    return np.minimum(scaled, 1.0)
