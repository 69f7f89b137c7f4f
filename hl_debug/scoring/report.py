"""Model report: how a prediction endpoint's answers compare with the annotations.

:func:`model_report` takes plain arrays (one entry per utterance) and returns a JSON-ready
dict: per split, per-intent precision/recall/F1/support, a confusion matrix, the most
confused intent pairs with example utterances and a reliability curve with the expected
calibration error; the entropy distribution per split and per intent (quantiles, and
histograms on shared bin edges); and the rows the endpoint gave no prediction for.
:func:`confusion_cell` lists the rows behind one confusion-matrix cell, and
:func:`summary_text` renders the short text version the CLI prints. The Signals step
stores the report (every split, per endpoint); the CLI and the web app show it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.calibration import calibration_curve
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from hl_debug.domain import EVAL_SPLITS, REPORT_SPLITS
from hl_debug.domain import SPLITS as DOMAIN_SPLITS

# Row selections a report can be asked for: one usage, ``evaluation`` (testing + validation)
# or ``all`` annotated rows.
SPLITS = REPORT_SPLITS
# Usages the entropy distributions are broken down by (None = no split: the unannotated rows).
_USAGES = (*DOMAIN_SPLITS, None)
_QUANTILES = (0.0, 0.25, 0.5, 0.75, 0.9, 1.0)


def _as_str_array(values: Sequence[Any], n: int, name: str) -> np.ndarray:
    """Object array of shape (n,): the strings, None for anything else (None, NaN, "")."""
    if len(values) != n:
        raise ValueError(f"{name} has {len(values)} entries but ids has {n}; pass one per utterance")
    out = np.empty(n, dtype=object)
    out[:] = [v if isinstance(v, str) and v != "" else None for v in values]
    return out


def _check_splits(splits: str | Sequence[str]) -> tuple[str, ...]:
    names = (splits,) if isinstance(splits, str) else tuple(splits)
    for name in names:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; valid: {', '.join(SPLITS)}")
    return tuple(dict.fromkeys(names))


def _in_split(usage: np.ndarray, split: str) -> np.ndarray:
    """Bool mask of shape (n,): the rows whose usage belongs to ``split`` (a name of :data:`SPLITS`)."""
    if split == "all":
        return np.ones(len(usage), dtype=bool)
    names = EVAL_SPLITS if split == "evaluation" else (split,)
    return np.array([u in names for u in usage], dtype=bool)


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


def _split_entry(rows: np.ndarray, scored: np.ndarray, *, ids: list[int], texts: list[str], given: np.ndarray,
                 predicted: np.ndarray, confidence: np.ndarray, intents: list[str], n_bins: int, n_pairs: int,
                 n_examples: int) -> dict[str, Any]:
    """Metrics on the annotated rows ``rows`` (index array) of which ``scored`` have a prediction."""
    entry: dict[str, Any] = {"n": len(rows), "n_scored": len(scored), "n_without_prediction": len(rows) - len(scored),
                             "accuracy": None, "macro_f1": None, "per_intent": {}, "confusion": None,
                             "most_confused": []}
    y, p = given[scored].astype(str), predicted[scored].astype(str)
    entry["calibration"] = reliability(y == p, np.clip(np.nan_to_num(confidence[scored]), 0, 1), n_bins=n_bins)
    if not len(scored):
        return entry
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
    for count, a, b in off[:n_pairs]:
        la, lb = intents[a], intents[b]
        hit = scored[((y == la) & (p == lb)) | ((y == lb) & (p == la))]
        ex = [{"id": ids[i], "text": texts[i], "given": given[i], "predicted": predicted[i],
               "confidence": float(confidence[i])} for i in hit]
        ex.sort(key=lambda e: -e["confidence"])
        entry["most_confused"].append({"intents": [la, lb], "count": count, f"{la}->{lb}": int(cm[a, b]),
                                       f"{lb}->{la}": int(cm[b, a]), "examples": ex[:n_examples]})
    return entry


def _entropy(entropy: np.ndarray, usage: np.ndarray, key: np.ndarray, has_pred: np.ndarray, intents: list[str],
             n_bins: int) -> dict[str, Any]:
    """Entropy quantiles per usage and per intent, and per-usage histograms on shared edges."""
    answered = has_pred & ~np.isnan(entropy)
    by_split, hist = {}, {}
    edges = np.histogram_bin_edges(entropy[answered], bins=n_bins) if answered.any() else np.array([])
    for u in _USAGES:
        sel = answered & np.array([v == u for v in usage], dtype=bool)
        by_split[u or "unassigned"] = _describe(entropy[sel])
        if sel.any():
            hist[u or "unassigned"] = np.histogram(entropy[sel], bins=edges)[0].tolist()
    by_intent = {lab: _describe(entropy[answered & (key == lab)]) for lab in intents}
    return {"by_split": by_split, "by_intent": by_intent, "histogram": {"edges": edges.tolist(), "counts": hist}}


def model_report(*, ids: Sequence[int], texts: Sequence[str], given: Sequence[str | None],
                 usage: Sequence[str | None], predicted: Sequence[str | None], confidence: Any,
                 entropy: Any, endpoint: str = "", splits: str | Sequence[str] = EVAL_SPLITS, n_bins: int = 10,
                 n_entropy_bins: int = 20, n_pairs: int = 5, n_examples: int = 3) -> dict[str, Any]:
    """Metrics of one endpoint's predictions against the annotations.

    Every array argument has one entry per utterance (length n); ``given``/``usage``/
    ``predicted`` hold None (or NaN, or "") where missing — no annotation, no split, no
    prediction. ``confidence`` and ``entropy`` are float arrays of shape (n,), NaN where
    there is no prediction.

    Parameters
    ----------
    splits : str or sequence of str
        The row selections to score, names from :data:`SPLITS`: a usage, ``evaluation``
        (testing + validation) or ``all``; metrics are on each one's annotated rows.
    n_bins : int
        Confidence bins of the reliability curves.
    n_entropy_bins : int
        Bins of the entropy histograms (edges shared by every split).
    n_pairs, n_examples : int
        Most-confused intent pairs per split, and example utterances per pair.

    Returns
    -------
    dict
        ``endpoint``, ``n_rows``, ``n_without_prediction``, ``without_prediction`` (id,
        text, usage, given), ``splits`` ({split: {n, n_scored, n_without_prediction,
        accuracy, macro_f1, per_intent, confusion {labels, matrix (given x predicted)},
        most_confused, calibration}}; accuracy/macro_f1/confusion are None without scored
        rows), ``calibration`` (:func:`reliability` on the annotated testing+validation
        rows with a prediction), ``entropy`` ({by_split, by_intent} quantiles — annotated
        rows by their given intent, unannotated ones by the predicted intent — and
        ``histogram`` {edges, counts {split: counts}} over the rows with a prediction).
    """
    n = len(ids)
    id_list = [int(i) for i in ids]
    texts = list(texts)
    if len(texts) != n:
        raise ValueError(f"texts has {len(texts)} entries but ids has {n}")
    given_a = _as_str_array(given, n, "given")
    usage_a = _as_str_array(usage, n, "usage")
    predicted_a = _as_str_array(predicted, n, "predicted")
    confidence = np.asarray(confidence, dtype=np.float64).reshape(-1)
    entropy = np.asarray(entropy, dtype=np.float64).reshape(-1)
    if len(confidence) != n or len(entropy) != n:
        raise ValueError(f"confidence ({len(confidence)}) and entropy ({len(entropy)}) need {n} entries")
    split_names = _check_splits(splits)
    for name, value in (("n_bins", n_bins), ("n_entropy_bins", n_entropy_bins)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if n_pairs < 0 or n_examples < 0:
        raise ValueError(f"n_pairs and n_examples must be >= 0, got {n_pairs} and {n_examples}")

    annotated = np.array([g is not None for g in given_a], dtype=bool)
    has_pred = np.array([p is not None for p in predicted_a], dtype=bool)
    intents = sorted(set(given_a[annotated]) | set(predicted_a[has_pred]))
    common = dict(ids=id_list, texts=texts, given=given_a, predicted=predicted_a, confidence=confidence,
                  intents=intents,
                  n_bins=n_bins, n_pairs=n_pairs, n_examples=n_examples)

    def entry(split: str) -> dict[str, Any]:
        rows = _in_split(usage_a, split) & annotated
        return _split_entry(np.flatnonzero(rows), np.flatnonzero(rows & has_pred), **common)

    out_splits = {split: entry(split) for split in split_names}
    evaluation = out_splits["evaluation"] if "evaluation" in out_splits else entry("evaluation")
    key = np.where(annotated, given_a, predicted_a)  # annotated rows by given intent, the rest by predicted
    missing = [{"id": id_list[i], "text": texts[i], "usage": usage_a[i], "given": given_a[i]}
               for i in np.flatnonzero(~has_pred)]
    return {
        "endpoint": endpoint,
        "n_rows": n,
        "n_without_prediction": len(missing),
        "without_prediction": missing,
        "splits": out_splits,
        "calibration": evaluation["calibration"],
        "entropy": _entropy(entropy, usage_a, key, has_pred, intents, n_entropy_bins),
    }


def confusion_cell(*, ids: Sequence[int], given: Sequence[str | None], usage: Sequence[str | None],
                   predicted: Sequence[str | None], given_label: str, predicted_label: str,
                   split: str = "evaluation") -> list[int]:
    """Ids of the annotated rows of ``split`` labelled ``given_label`` and predicted
    ``predicted_label``: the rows behind one cell of :func:`model_report`'s confusion matrix.

    ``ids``/``given``/``usage``/``predicted`` are as in :func:`model_report` (length n);
    ``split`` is a name from :data:`SPLITS`.
    """
    n = len(ids)
    (split,) = _check_splits(split)
    given_a = _as_str_array(given, n, "given")
    predicted_a = _as_str_array(predicted, n, "predicted")
    hit = (_in_split(_as_str_array(usage, n, "usage"), split) & (given_a == given_label)
           & (predicted_a == predicted_label))
    return [int(ids[int(i)]) for i in np.flatnonzero(hit)]


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
