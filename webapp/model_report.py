"""Model-report figures computed from the store: the numbers behind ``/report``.

Metrics are computed here from the cached predictions (so the page works with any
endpoint in the store); the Signals step's ``model_report`` document, when present, is
shown alongside as it is.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from hl_debug.errors import ConfigError
from hl_debug.store import Store

SPLITS = ("evaluation", "testing", "validation", "training", "all")


def _split_mask(df: pd.DataFrame, split: str) -> pd.Series:
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    if split == "all":
        return pd.Series(True, index=df.index)
    if split == "evaluation":
        return df["usage"].isin(["testing", "validation"])
    return df["usage"] == split


def frame(store: Store, endpoint: str | None = None) -> pd.DataFrame:
    """One row per utterance: id, text, intent, usage, label (predicted), confidence, entropy."""
    return store.predictions_df(endpoint)


def cell_ids(store: Store, *, given: str, predicted: str, split: str = "evaluation",
             endpoint: str | None = None) -> list[int]:
    """Ids of annotated rows of ``split`` labelled ``given`` and predicted ``predicted``."""
    df = frame(store, endpoint)
    m = _split_mask(df, split) & (df["intent"] == given) & (df["label"] == predicted)
    return [int(i) for i in df.loc[m, "id"]]


def compute(store: Store, *, endpoint: str | None = None, split: str = "evaluation",
            n_bins: int = 10) -> dict[str, Any]:
    """Per-intent metrics, confusion matrix, reliability bins, entropy histograms.

    Returns a dict with ``labels`` (sorted intents), ``per_intent`` (list of dicts with
    precision, recall, f1, support), ``accuracy``, ``confusion`` (shape
    ``(n_labels, n_labels)``, rows = given label, columns = predicted label),
    ``reliability`` (per confidence bin: lower, upper, mean confidence, accuracy, count),
    ``ece``, ``entropy_hist`` (per split: bin edges and counts), ``entropy_by_intent``
    (mean/median entropy per predicted intent) and ``no_prediction`` (rows the endpoint
    did not answer).
    """
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    df = frame(store, endpoint)
    sel = df[_split_mask(df, split) & df["intent"].notna()]
    answered = sel[sel["label"].notna()]
    labels = sorted(set(store.intents()) | set(answered["label"].dropna()))
    out: dict[str, Any] = {"endpoint": endpoint or store.active_endpoint(), "split": split, "labels": labels,
                           "n_rows": int(len(sel)), "n_answered": int(len(answered))}
    if len(answered):
        y, p = answered["intent"].to_numpy(), answered["label"].to_numpy()
        prec, rec, f1, sup = precision_recall_fscore_support(y, p, labels=labels, zero_division=0)
        out["per_intent"] = [{"intent": lab, "precision": float(a), "recall": float(b), "f1": float(c), "support": int(d)}
                             for lab, a, b, c, d in zip(labels, prec, rec, f1, sup)]
        out["accuracy"] = float(np.mean(y == p))
        out["macro_f1"] = float(np.mean(f1[sup > 0])) if (sup > 0).any() else 0.0
        out["confusion"] = confusion_matrix(y, p, labels=labels).tolist()
        conf = answered["confidence"].astype(float).to_numpy()
        correct = (y == p).astype(float)
        edges = np.linspace(0, 1, n_bins + 1)
        which = np.clip(np.digitize(conf, edges[1:-1]), 0, n_bins - 1)
        bins, ece = [], 0.0
        for b in range(n_bins):
            m = which == b
            if m.any():
                bins.append({"lower": float(edges[b]), "upper": float(edges[b + 1]), "confidence": float(conf[m].mean()),
                             "accuracy": float(correct[m].mean()), "count": int(m.sum())})
                ece += m.mean() * abs(conf[m].mean() - correct[m].mean())
        out["reliability"], out["ece"] = bins, float(ece)
    else:
        out.update(per_intent=[], accuracy=None, macro_f1=None, confusion=[], reliability=[], ece=None)
    ent = df[df["entropy"].notna()]
    hist: dict[str, dict] = {}
    if len(ent):
        edges = np.histogram_bin_edges(ent["entropy"].astype(float), bins=20)
        for usage, group in ent.groupby(ent["usage"].fillna("unannotated")):
            counts, _ = np.histogram(group["entropy"].astype(float), bins=edges)
            hist[str(usage)] = {"edges": edges.tolist(), "counts": counts.tolist()}
    out["entropy_hist"] = hist
    out["entropy_by_intent"] = [
        {"intent": str(k), "mean": float(g.mean()), "median": float(g.median()), "n": int(len(g))}
        for k, g in ent.groupby("label")["entropy"]
    ]
    missing = df[df["label"].isna()]
    out["no_prediction"] = [{"id": int(r.id), "text": r.text, "intent": r.intent, "usage": r.usage}
                            for r in missing.itertuples()]
    return out


def signals_entry(report: Any, endpoint: str) -> dict | None:
    """The Signals step's ``model_report`` section for ``endpoint``, whatever its layout.

    Accepts ``{"endpoints": [{"endpoint": ..., ...}, ...]}``, ``{endpoint: {...}}`` or a
    flat dict; returns None when nothing matches.
    """
    if not isinstance(report, dict):
        return None
    entries = report.get("endpoints")
    if isinstance(entries, list):
        for entry in entries:
            if isinstance(entry, dict) and entry.get("endpoint") == endpoint:
                return entry
        return None
    if isinstance(report.get(endpoint), dict):
        return report[endpoint]
    return report


def summary_scalars(entry: dict | None, *, max_depth: int = 3) -> dict[str, Any]:
    """Numbers and strings of a report section, flattened to dotted keys (``splits.testing.accuracy``)."""
    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str, depth: int) -> None:
        if isinstance(node, dict) and depth < max_depth:
            for key, value in node.items():
                if key in ("endpoint", "per_intent", "confusion", "labels"):
                    continue
                walk(value, f"{prefix}.{key}" if prefix else str(key), depth + 1)
        elif isinstance(node, (int, float, str)) and not isinstance(node, bool):
            out[prefix] = node

    walk(entry or {}, "", 0)
    return out


def most_confused(entry: dict | None, split: str) -> list[dict]:
    """Most-confused intent pairs for ``split`` with their example utterances (empty when absent).

    Each item: ``intents`` (two labels), ``count`` and ``examples`` (dicts with id, text,
    given, predicted, confidence).
    """
    if not isinstance(entry, dict) or not isinstance(entry.get("splits"), dict):
        return []
    names = ("testing", "validation") if split == "evaluation" else (split,)
    pairs: list[dict] = []
    for name in names:
        for item in (entry["splits"].get(name) or {}).get("most_confused") or []:
            if isinstance(item, dict) and isinstance(item.get("intents"), list):
                examples = [e for e in item.get("examples") or [] if isinstance(e, dict)]
                pairs.append({"split": name, "intents": item["intents"], "count": item.get("count"),
                              "examples": examples})
    return pairs
