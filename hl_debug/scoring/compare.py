"""Comparing two models' answers on the same rows: pure functions over label arrays.

Two endpoints (the recorded API and the local model, or two versions of the local model) answer
the same utterances; these functions say how far they agree, how their accuracy and F1 differ
overall and per intent — with a bootstrap interval on the PAIRED difference (both models are
scored on the same resampled rows, so row difficulty cancels and the interval is far narrower
than two separate intervals would suggest) — which rows changed (fixed, broken, or changed
among wrong answers) and in which groups (clusters) B is significantly worse than A.

Inputs are plain sequences of labels (str, None for "no label" / "no prediction"), one entry
per row. A row with no reference label is left out of every metric; a missing prediction
counts as wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: How a row's prediction changed from A to B (None: unchanged).
FIXED, BROKEN, CHANGED = "fixed", "broken", "changed"
CHANGE_KINDS = (FIXED, BROKEN, CHANGED)
#: One label (or group) per row: a sequence or a 1-d array.
Labels = Sequence[Any] | np.ndarray


def _arrays(y: Labels, a: Labels, b: Labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ya, aa, ba = (np.asarray(list(v), dtype=object) for v in (y, a, b))
    if not len(ya) == len(aa) == len(ba):
        raise ValueError(f"y, a and b must have one entry per row, got {len(ya)}, {len(aa)}, {len(ba)}")
    return ya, aa, ba


def change_kinds(y: Labels, a: Labels, b: Labels) -> np.ndarray:
    """Per row, how the prediction changed from ``a`` to ``b`` against reference ``y``.

    Returns an object array, shape ``(n,)``: ``"fixed"`` (A wrong, B right), ``"broken"``
    (A right, B wrong), ``"changed"`` (both wrong, or no reference label, and A != B) or
    None (the same answer).
    """
    yv, av, bv = _arrays(y, a, b)
    out = np.full(len(yv), None, dtype=object)
    diff = av != bv
    known = np.not_equal(yv, None)  # type: ignore[call-overload]
    right_a, right_b = known & (av == yv), known & (bv == yv)
    out[diff] = CHANGED
    out[diff & ~right_a & right_b] = FIXED
    out[diff & right_a & ~right_b] = BROKEN
    return out


def agreement(a: Labels, b: Labels) -> dict[str, Any]:
    """Share of rows where ``a`` and ``b`` give the same answer, among rows both answered."""
    a_arr, b_arr = np.asarray(list(a), dtype=object), np.asarray(list(b), dtype=object)
    if len(a_arr) != len(b_arr):
        raise ValueError(f"a and b must have one entry per row, got {len(a_arr)} and {len(b_arr)}")
    both = np.not_equal(a_arr, None) & np.not_equal(b_arr, None)  # type: ignore[call-overload]
    n = int(both.sum())
    same = int((a_arr[both] == b_arr[both]).sum())
    return {"n": n, "n_same": same, "agreement": same / n if n else None}


def _encode(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Integer codes: the reference intents are 0..K-1; any other answer (another intent, or
    none) is K, which never equals a reference code."""
    classes = sorted({str(v) for v in y})
    index = {c: k for k, c in enumerate(classes)}
    K = len(classes)

    def code(v: np.ndarray) -> np.ndarray:
        return np.array([index.get(str(x), K) if x is not None else K for x in v], dtype=np.int64)

    return classes, code(y), code(a), code(b)


def _f1_by_class(yt: np.ndarray, yp: np.ndarray, K: int) -> np.ndarray:
    """Per-class F1 for each resample: ``yt``/``yp`` shape ``(B, n)`` codes -> ``(B, K)``.

    One ``bincount`` per count (true, predicted, true positive) over ``resample * (K+1) + code``,
    so 1,000 resamples of a few thousand rows cost a few milliseconds. F1 is 0 where a class
    is neither true nor predicted in a resample (scikit-learn's ``zero_division=0``).
    """
    B = yt.shape[0]
    offset = (np.arange(B) * (K + 1))[:, None]
    size = B * (K + 1)
    n_true = np.bincount((yt + offset).ravel(), minlength=size).reshape(B, K + 1)[:, :K]
    n_pred = np.bincount((yp + offset).ravel(), minlength=size).reshape(B, K + 1)[:, :K]
    hit = (yt == yp) & (yt < K)
    tp = np.bincount((yt + offset)[hit], minlength=size).reshape(B, K + 1)[:, :K]
    denom = n_true + n_pred
    return np.divide(2.0 * tp, denom, out=np.zeros_like(denom, dtype=float), where=denom > 0)


def _interval(samples: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """The percentile interval of ``samples`` along axis 0 (scalars for 1-d samples)."""
    bounds = np.percentile(samples, [50 * (1 - level), 50 * (1 + level)], axis=0)
    return bounds[0], bounds[1]


def paired_metrics(y: Labels, a: Labels, b: Labels, *, n_boot: int = 1000, level: float = 0.95,
                   seed: int = 0) -> dict[str, Any]:
    """Accuracy, macro F1 and per-intent F1 of ``a`` and ``b`` against ``y``, with bootstrap
    intervals on the paired difference B - A.

    Parameters
    ----------
    y, a, b:
        Reference labels and the two models' answers, one per row (None: no label / no answer).
        Rows without a reference label are left out.
    n_boot:
        Bootstrap resamples of the rows (the same resample scores both models).
    level:
        Coverage of the percentile intervals.

    Returns
    -------
    ``n`` (rows scored), ``accuracy`` and ``macro_f1`` (each ``a``, ``b``, ``delta``, ``low``,
    ``high``), ``per_intent`` ``{intent: {support, f1_a, f1_b, recall_a, recall_b, delta,
    low, high}}`` (delta of F1), ``level`` and ``n_boot``.
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    yv, av, bv = _arrays(y, a, b)
    keep = np.not_equal(yv, None)  # type: ignore[call-overload]
    yv, av, bv = yv[keep], av[keep], bv[keep]
    n = len(yv)
    out: dict[str, Any] = {"n": n, "level": level, "n_boot": n_boot}
    if n == 0:
        empty = {"a": None, "b": None, "delta": None, "low": None, "high": None}
        return {**out, "accuracy": empty, "macro_f1": dict(empty), "per_intent": {}}
    classes, yt, ya, yb = _encode(yv, av, bv)
    K = len(classes)
    rng = np.random.default_rng(seed)
    idx = np.vstack([np.arange(n)[None, :], rng.integers(0, n, size=(n_boot, n))])  # row 0: the sample itself
    ok_a, ok_b = (ya == yt).astype(float), (yb == yt).astype(float)
    acc_a, acc_b = ok_a[idx].mean(axis=1), ok_b[idx].mean(axis=1)
    f1_a, f1_b = _f1_by_class(yt[idx], ya[idx], K), _f1_by_class(yt[idx], yb[idx], K)
    macro_a, macro_b = f1_a.mean(axis=1), f1_b.mean(axis=1)

    def summary(va: np.ndarray, vb: np.ndarray) -> dict[str, float]:
        lo, hi = _interval(vb[1:] - va[1:], level)
        return {"a": float(va[0]), "b": float(vb[0]), "delta": float(vb[0] - va[0]), "low": float(lo),
                "high": float(hi)}

    lo_k, hi_k = _interval(f1_b[1:] - f1_a[1:], level)
    support = np.bincount(yt, minlength=K)
    per_intent = {}
    for k, intent in enumerate(classes):
        rows = yt == k
        per_intent[intent] = {
            "support": int(support[k]), "f1_a": float(f1_a[0, k]), "f1_b": float(f1_b[0, k]),
            "recall_a": float(ok_a[rows].mean()), "recall_b": float(ok_b[rows].mean()),
            "delta": float(f1_b[0, k] - f1_a[0, k]), "low": float(lo_k[k]), "high": float(hi_k[k])}
    return {**out, "accuracy": summary(acc_a, acc_b), "macro_f1": summary(macro_a, macro_b),
            "per_intent": per_intent}


def regressions(y: Labels, a: Labels, b: Labels, groups: Labels, *, alpha: float = 0.05) -> list[dict]:
    """Groups (clusters) where B is worse than A: a paired test per group, FDR-controlled.

    Within each group the rows A got right and B wrong (``n_broken``) are set against the rows
    A got wrong and B right (``n_fixed``); under "B is no worse" each discordant row is a fair
    coin, so the one-sided exact binomial (McNemar's exact test) gives ``p_value``. The
    Benjamini-Hochberg procedure over all groups gives ``q_value``; ``significant`` is
    ``q_value <= alpha`` (the expected share of false regressions among those listed is at
    most ``alpha``).

    Returns one dict per group with a reference label (``group``, ``n``, ``accuracy_a``,
    ``accuracy_b``, ``n_fixed``, ``n_broken``, ``p_value``, ``q_value``, ``significant``),
    most significant first. Rows whose group is None are left out.
    """
    from scipy.stats import binomtest, false_discovery_control

    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    yv, av, bv = _arrays(y, a, b)
    g = np.asarray(list(groups), dtype=object)
    if len(g) != len(yv):
        raise ValueError(f"groups must have one entry per row, got {len(g)} for {len(yv)} rows")
    keep = np.not_equal(yv, None) & np.not_equal(g, None)  # type: ignore[call-overload]
    yv, av, bv, g = yv[keep], av[keep], bv[keep], g[keep]
    right_a, right_b = av == yv, bv == yv
    rows: list[dict[str, Any]] = []
    for group in sorted(set(g.tolist()), key=str):
        m = g == group
        broken = int((right_a & ~right_b & m).sum())
        fixed = int((~right_a & right_b & m).sum())
        p = binomtest(broken, broken + fixed, 0.5, alternative="greater").pvalue if broken + fixed else 1.0
        rows.append({"group": group, "n": int(m.sum()), "accuracy_a": float(right_a[m].mean()),
                     "accuracy_b": float(right_b[m].mean()), "n_fixed": fixed, "n_broken": broken,
                     "p_value": float(p)})
    if rows:
        q = np.atleast_1d(false_discovery_control([r["p_value"] for r in rows], method="bh"))
        for r, qv in zip(rows, q.tolist()):
            r["q_value"] = float(qv)
            r["significant"] = bool(qv <= alpha)
    rows.sort(key=lambda r: (r["p_value"], -r["n_broken"], str(r["group"])))
    return rows


def compare_answers(y: Labels, a: Labels, b: Labels, *, groups: Labels | None = None, n_boot: int = 1000,
                    level: float = 0.95, seed: int = 0, alpha: float = 0.05) -> dict[str, Any]:
    """Everything :mod:`hl_debug.steps.compare` reports for one reference labelling: the
    :func:`paired_metrics`, the counts of :func:`change_kinds` (``changes``), the changed
    rows' indices by kind (``changed_rows``) and, with ``groups``, :func:`regressions`."""
    kinds = change_kinds(y, a, b)
    out = paired_metrics(y, a, b, n_boot=n_boot, level=level, seed=seed)
    out["changes"] = {k: int((kinds == k).sum()) for k in CHANGE_KINDS}
    out["changed_rows"] = {k: np.flatnonzero(kinds == k).tolist() for k in CHANGE_KINDS}
    if groups is not None:
        out["groups"] = regressions(y, a, b, groups, alpha=alpha)
    return out


def recovered_share(base: Any, arm: Any, oracle: Any, *, groups: Any = None, n_boot: int = 1000,
                    level: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """How much of the best possible accuracy gain a change recovered, with paired bootstrap intervals.

    Three models answer the same rows: ``base`` (before), ``arm`` (after the change under test,
    e.g. a retrain after reviewing K flagged rows) and ``oracle`` (after the best possible
    change, e.g. every planted label error fixed). The share is
    ``(acc(arm) - acc(base)) / (acc(oracle) - acc(base))``. All three are scored on the same
    resampled rows, so the gains' intervals are paired.

    Parameters
    ----------
    base, arm, oracle : array-like of bool, shape (n,)
        Whether each model answered each row correctly.
    groups : array-like, shape (n,), optional
        Resample within each group (e.g. the benchmark seed a row belongs to: each seed is its
        own experiment, and pooling seeds keeps their sizes fixed).
    n_boot, level, seed :
        Bootstrap resamples, interval coverage and seed.

    Returns
    -------
    dict
        ``gain`` / ``gain_low`` / ``gain_high`` (the arm's accuracy change), ``oracle_gain`` /
        ``oracle_low`` / ``oracle_high``, ``share`` (None when the oracle gains nothing) and
        ``share_low`` / ``share_high`` (percentiles of the share over the resamples where the
        oracle gained; None when fewer than half of them did: the share is then not
        measurable), ``oracle_positive`` (the fraction of resamples with an oracle gain > 0), ``n``.
    """
    a, b, o = (np.asarray(v, dtype=bool) for v in (base, arm, oracle))
    if not (a.ndim == 1 and a.shape == b.shape == o.shape):
        raise ValueError(f"base, arm and oracle must be 1-D of one length, got {a.shape}, {b.shape}, {o.shape}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n_boot < 2:
        raise ValueError(f"n_boot must be >= 2, got {n_boot}")
    g = np.zeros(len(a), dtype=np.int64) if groups is None else np.unique(np.asarray(groups), return_inverse=True)[1]
    if g.shape != a.shape:
        raise ValueError(f"groups must have shape {a.shape}, got {g.shape}")
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(g == k) for k in np.unique(g)]
    draws = np.stack([np.concatenate([rows[rng.integers(0, len(rows), len(rows))] for rows in members])
                      for _ in range(n_boot)])  # (n_boot, n) row indices, each group resampled in itself
    gain_s = b[draws].mean(axis=1) - a[draws].mean(axis=1)
    oracle_s = o[draws].mean(axis=1) - a[draws].mean(axis=1)
    gain, oracle_gain = float(b.mean() - a.mean()), float(o.mean() - a.mean())
    positive = oracle_s > 0
    share_low = share_high = None
    if positive.mean() >= 0.5:
        lo, hi = _interval(gain_s[positive] / oracle_s[positive], level)
        share_low, share_high = float(lo), float(hi)
    glo, ghi = _interval(gain_s, level)
    olo, ohi = _interval(oracle_s, level)
    return {"gain": gain, "gain_low": float(glo), "gain_high": float(ghi), "oracle_gain": oracle_gain,
            "oracle_low": float(olo), "oracle_high": float(ohi),
            "share": gain / oracle_gain if oracle_gain > 0 else None, "share_low": share_low, "share_high": share_high,
            "oracle_positive": float(positive.mean()), "n": len(a)}
