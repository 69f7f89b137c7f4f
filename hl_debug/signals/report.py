"""Model report: how a prediction endpoint's answers compare with the annotations.

:func:`model_report` takes plain arrays (one entry per utterance) and returns a JSON-ready
dict: per-intent precision/recall/F1/support and a confusion matrix on the ``testing``
and ``validation`` rows, the most confused intent pairs with example utterances, a
reliability curve with the expected calibration error, the entropy distribution per
split and per intent, and the rows the endpoint gave no prediction for.
:func:`summary_text` renders the short text version the CLI prints.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.calibration import calibration_curve
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

EVAL_SPLITS = ("testing", "validation")
_QUANTILES = (0.0, 0.25, 0.5, 0.75, 0.9, 1.0)


def _as_str_list(values: Sequence[Any], n: int, name: str) -> list[str | None]:
    if len(values) != n:
        raise ValueError(f"{name} has {len(values)} entries but ids has {n}; pass one per utterance")
    return [v if isinstance(v, str) and v != "" else None for v in values]


def reliability(correct: Any, confidence: Any, *, n_bins: int = 10) -> dict[str, Any]:
    """Reliability curve and expected calibration error of top-1 confidences.

    Parameters
    ----------
    correct : bool array, shape (n,)
        Whether the top prediction matched the label.
    confidence : float array, shape (n,)
        The top prediction's confidence, in [0, 1].
    n_bins : int
        Equal-width confidence bins.

    Returns
    -------
    dict
        ``bins`` (list of {lo, hi, n, confidence, accuracy} for non-empty bins), ``ece``
        (count-weighted mean |accuracy - confidence|), ``n``.
    """
    correct = np.asarray(correct, dtype=bool)
    confidence = np.asarray(confidence, dtype=np.float64)
    if correct.shape != confidence.shape:
        raise ValueError(f"correct {correct.shape} and confidence {confidence.shape} must have the same shape")
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    if len(correct) == 0:
        return {"bins": [], "ece": None, "n": 0}
    if confidence.min() < 0 or confidence.max() > 1:
        raise ValueError("confidence values must lie in [0, 1]")
    edges = np.linspace(0, 1, n_bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, n_bins - 1)
    counts = np.bincount(which, minlength=n_bins)
    # sklearn's curve gives the per-bin means for the non-empty bins, in bin order.
    if len(np.unique(correct)) > 1:
        acc, conf = calibration_curve(correct, confidence, n_bins=n_bins, strategy="uniform")
    else:
        nz = counts > 0
        conf = np.bincount(which, weights=confidence, minlength=n_bins)[nz] / counts[nz]
        acc = np.full(nz.sum(), float(correct[0]))
    bins = []
    for (b, n), a, c in zip(((b, counts[b]) for b in np.flatnonzero(counts)), acc, conf):
        bins.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "n": int(n),
                     "confidence": float(c), "accuracy": float(a)})
    ece = float(sum(x["n"] * abs(x["accuracy"] - x["confidence"]) for x in bins) / len(correct))
    return {"bins": bins, "ece": ece, "n": int(len(correct))}


def _describe(values: np.ndarray) -> dict[str, Any]:
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return {"n": 0}
    q = np.quantile(values, _QUANTILES)
    return {"n": int(len(values)), "mean": float(values.mean()),
            **{f"q{int(p * 100)}": float(v) for p, v in zip(_QUANTILES, q)}}


def model_report(*, ids: Sequence[int], texts: Sequence[str], given: Sequence[str | None],
                 usage: Sequence[str | None], predicted: Sequence[str | None], confidence: Any,
                 entropy: Any, endpoint: str = "", n_bins: int = 10, n_pairs: int = 5,
                 n_examples: int = 3) -> dict[str, Any]:
    """Metrics of one endpoint's predictions against the annotations.

    Every argument has one entry per utterance (length n); ``given``/``usage``/``predicted``
    hold None (or NaN) where missing — no annotation, no split, no prediction.

    Returns
    -------
    dict
        ``endpoint``, ``n_rows``, ``n_without_prediction``, ``without_prediction``
        (ids + texts), ``splits`` ({split: {n, n_scored, accuracy, macro_f1, per_intent,
        confusion, most_confused}}), ``calibration`` (:func:`reliability` on the
        annotated testing+validation rows with a prediction), ``entropy`` ({by_split,
        by_intent} quantiles).
    """
    n = len(ids)
    ids = [int(i) for i in ids]
    texts = list(texts)
    if len(texts) != n:
        raise ValueError(f"texts has {len(texts)} entries but ids has {n}")
    given = _as_str_list(given, n, "given")
    usage = _as_str_list(usage, n, "usage")
    predicted = _as_str_list(predicted, n, "predicted")
    confidence = np.asarray(confidence, dtype=np.float64).reshape(-1)
    entropy = np.asarray(entropy, dtype=np.float64).reshape(-1)
    if len(confidence) != n or len(entropy) != n:
        raise ValueError(f"confidence ({len(confidence)}) and entropy ({len(entropy)}) need {n} entries")
    has_pred = np.array([p is not None for p in predicted])
    intents = sorted({g for g in given if g} | {p for p in predicted if p})

    splits: dict[str, Any] = {}
    for split in EVAL_SPLITS:
        rows = [i for i in range(n) if usage[i] == split and given[i] is not None]
        scored = [i for i in rows if has_pred[i]]
        entry: dict[str, Any] = {"n": len(rows), "n_scored": len(scored), "n_without_prediction": len(rows) - len(scored)}
        if scored:
            y = [given[i] for i in scored]
            p = [predicted[i] for i in scored]
            prec, rec, f1, sup = precision_recall_fscore_support(y, p, labels=intents, zero_division=0)
            entry["accuracy"] = float(accuracy_score(y, p))
            present = sup > 0
            entry["macro_f1"] = float(f1[present].mean()) if present.any() else None
            entry["per_intent"] = {lab: {"precision": float(prec[j]), "recall": float(rec[j]), "f1": float(f1[j]),
                                         "support": int(sup[j])} for j, lab in enumerate(intents)}
            cm = confusion_matrix(y, p, labels=intents)
            entry["confusion"] = {"labels": intents, "matrix": cm.tolist()}
            off = [(int(cm[a, b] + cm[b, a]), a, b) for a in range(len(intents)) for b in range(a + 1, len(intents))
                   if cm[a, b] + cm[b, a] > 0]
            off.sort(key=lambda t: (-t[0], intents[t[1]], intents[t[2]]))
            pairs = []
            for count, a, b in off[:n_pairs]:
                ex = [{"id": ids[i], "text": texts[i], "given": given[i], "predicted": predicted[i],
                       "confidence": float(confidence[i])}
                      for i in scored if {given[i], predicted[i]} == {intents[a], intents[b]}]
                ex.sort(key=lambda e: -e["confidence"])
                pairs.append({"intents": [intents[a], intents[b]], "count": count,
                              f"{intents[a]}->{intents[b]}": int(cm[a, b]),
                              f"{intents[b]}->{intents[a]}": int(cm[b, a]), "examples": ex[:n_examples]})
            entry["most_confused"] = pairs
        splits[split] = entry

    evaluated = np.array([usage[i] in EVAL_SPLITS and given[i] is not None and has_pred[i] for i in range(n)])
    correct = np.array([predicted[i] == given[i] for i in range(n)])
    calibration = reliability(correct[evaluated], np.clip(np.nan_to_num(confidence[evaluated]), 0, 1), n_bins=n_bins)

    by_split = {}
    for split in ("training", "validation", "testing", None):
        sel = np.array([usage[i] == split for i in range(n)]) & has_pred
        by_split[split or "unassigned"] = _describe(entropy[sel])
    by_intent = {}
    for lab in intents:
        # Annotated rows by their given intent; unannotated rows by the predicted one.
        sel = np.array([(given[i] or predicted[i]) == lab for i in range(n)]) & has_pred
        by_intent[lab] = _describe(entropy[sel])

    missing = [{"id": ids[i], "text": texts[i], "usage": usage[i], "given": given[i]} for i in range(n) if not has_pred[i]]
    return {
        "endpoint": endpoint,
        "n_rows": n,
        "n_without_prediction": len(missing),
        "without_prediction": missing,
        "splits": splits,
        "calibration": calibration,
        "entropy": {"by_split": by_split, "by_intent": by_intent},
    }


def summary_text(report: dict[str, Any]) -> str:
    """A few lines per endpoint: accuracy/macro-F1 per split, ECE, confusions, gaps."""
    lines = []
    for ep in report.get("endpoints", [report]):
        lines.append(f"Endpoint {ep['endpoint']}: {ep['n_rows']} rows, {ep['n_without_prediction']} without prediction")
        for split, s in ep["splits"].items():
            if s.get("n_scored"):
                lines.append(f"  {split:<10} n={s['n_scored']:<5} accuracy={s['accuracy']:.3f}  macro-F1={s['macro_f1']:.3f}")
                weak = sorted(s["per_intent"].items(), key=lambda kv: kv[1]["f1"] if kv[1]["support"] else 9)[:3]
                lines.append("             weakest: " + ", ".join(f"{k} F1={v['f1']:.2f}" for k, v in weak))
                for pair in s["most_confused"][:3]:
                    lines.append(f"             confused: {pair['intents'][0]} <-> {pair['intents'][1]} ({pair['count']})")
            else:
                lines.append(f"  {split:<10} no scored rows")
        cal = ep["calibration"]
        if cal["n"]:
            lines.append(f"  calibration: ECE={cal['ece']:.3f} over {cal['n']} evaluation rows")
    return "\n".join(lines)
