"""Inter-reviewer agreement in team mode: where named reviewers decided the same rows, how
often they chose the same label, and Cohen's kappa (agreement beyond what their label
frequencies alone would give).

Pure functions over decision rows (``id``, ``reviewer``, ``label``: each reviewer's latest
labelling decision per row, as :meth:`~hl_debug.storage.Store.reviewer_labels` reads them).
Kappa is scikit-learn's :func:`~sklearn.metrics.cohen_kappa_score` per pair of reviewers; with
more than two reviewers the summary is the mean of the pairs' kappas weighted by the rows
each pair shares (Cohen's kappa is defined for two raters).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from itertools import combinations
from typing import Any

from sklearn.metrics import cohen_kappa_score

__all__ = ["agreement", "by_reviewer", "disagreements", "pair_agreement"]


def by_reviewer(decisions: Iterable[Mapping[str, Any]]) -> dict[str, dict[int, str]]:
    """``{reviewer: {row id: label}}`` (the last row given for a pair wins; unnamed rows are left out)."""
    out: dict[str, dict[int, str]] = {}
    for d in decisions:
        if d.get("reviewer"):
            out.setdefault(str(d["reviewer"]), {})[int(d["id"])] = d["label"]
    return out


def pair_agreement(a: Mapping[int, str], b: Mapping[int, str]) -> dict[str, Any]:
    """Agreement of two reviewers on the rows both decided: ``n_rows``, ``n_agree``,
    ``agreement`` (share of equal labels) and ``kappa`` (None when undefined: no shared rows,
    or both used one and the same label throughout)."""
    common = sorted(set(a) & set(b))
    la, lb = [str(a[i]) for i in common], [str(b[i]) for i in common]
    n_agree = sum(x == y for x, y in zip(la, lb, strict=True))
    kappa = None
    if common and len(set(la) | set(lb)) > 1:
        value = float(cohen_kappa_score(la, lb))
        kappa = None if math.isnan(value) else value
    return {"n_rows": len(common), "n_agree": n_agree, "agreement": n_agree / len(common) if common else None,
            "kappa": kappa}


def agreement(decisions: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The ``reviewers`` summary of ``hl-debug report``: rows per reviewer, every pair that
    shares rows (:func:`pair_agreement`), the weighted mean ``kappa`` and ``agreement`` over
    the pairs, and ``n_disagreements`` (rows where the reviewers' labels differ)."""
    decisions = list(decisions)
    rows = by_reviewer(decisions)
    pairs = []
    for ra, rb in combinations(sorted(rows), 2):
        pair = pair_agreement(rows[ra], rows[rb])
        if pair["n_rows"]:
            pairs.append({"a": ra, "b": rb, **pair})
    shared = sum(p["n_rows"] for p in pairs)
    with_kappa = [p for p in pairs if p["kappa"] is not None]
    weight = sum(p["n_rows"] for p in with_kappa)
    return {
        "n_reviewers": len(rows),
        "decided": {name: len(r) for name, r in sorted(rows.items())},
        "pairs": pairs,
        "n_shared": shared,
        "agreement": sum(p["n_agree"] for p in pairs) / shared if shared else None,
        "kappa": sum(p["kappa"] * p["n_rows"] for p in with_kappa) / weight if weight else None,
        "n_disagreements": len(disagreements(decisions)),
    }


def disagreements(decisions: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows two or more reviewers labelled differently: ``id``, ``labels`` (``{reviewer:
    label}``) and the row's other fields as given (``text``, ``intent``), in row order."""
    grouped: dict[int, dict[str, Any]] = {}
    for d in decisions:
        if not d.get("reviewer"):
            continue
        row = grouped.setdefault(int(d["id"]), {**{k: v for k, v in d.items() if k not in ("reviewer", "label",
                                                                                           "decided_at")},
                                                "id": int(d["id"]), "labels": {}})
        row["labels"][str(d["reviewer"])] = d["label"]
    return [row for _, row in sorted(grouped.items()) if len(set(row["labels"].values())) > 1]
