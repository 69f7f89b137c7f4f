"""The rows the ``issues`` signal stores: one per scored utterance, with the evidence in
columns and the :func:`issue_reason` a reviewer reads, from a fitted
:class:`~hl_debug.scoring.label_detector.LabelIssueDetector`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from hl_debug.scoring.label_issues import cleanlab_scores

if TYPE_CHECKING:
    from hl_debug.scoring.label_detector import LabelIssueDetector


def issue_reason(given: str, suggested: str, p_given: float, p_sugg: float, knn_sugg: int, knn_given: int, k: int,
                 api_label: str | None, api_conf: float | None, cluster_share: float | None) -> str:
    """The short text a reviewer reads: what the classifier, the neighbours, the API and the
    cluster say about one row's label."""
    parts = [f"classifier: {suggested} {p_sugg:.2f} vs {given} {p_given:.2f}",
             f"neighbours: {knn_sugg}/{k} {suggested}, {knn_given}/{k} {given}"]
    if api_label is not None and api_label != given:
        parts.append(f"API says {api_label} ({api_conf:.2f})")
    elif api_label == given:
        parts.append("API agrees with the label")
    if cluster_share is not None and not np.isnan(cluster_share):
        parts.append(f"{cluster_share:.0%} of its cluster share the label")
    return "; ".join(parts)


def issue_rows(det: LabelIssueDetector, *, ids: Sequence[int] | np.ndarray, labels: np.ndarray, classes: Sequence[str],
               k: int, cluster_ids: np.ndarray | None = None, cluster_purity: np.ndarray | None = None,
               api_labels: np.ndarray | None = None, api_confidence: np.ndarray | None = None) -> list[dict[str, Any]]:
    """One row per utterance scored by a fitted ``det``, most suspicious first, ranked from 1.

    ``ids``, ``labels`` (class indices), ``cluster_ids``, ``cluster_purity`` (NaN: unknown),
    ``api_labels`` (-1: no answer) and ``api_confidence`` are the fitted rows' (length m);
    ``k`` the neighbours each row's agreement was counted over.
    """
    y = np.asarray(labels)
    pred, knn_p = det.pred_probs_, det.knn_probs_
    assert pred is not None and knn_p is not None, "issue_rows needs a fitted detector"
    nm = cleanlab_scores(y, pred, method="normalized_margin")
    purity = cluster_purity if cluster_purity is not None else np.full(len(y), np.nan)
    rows = []
    for j in range(len(y)):
        given, sugg = classes[y[j]], classes[det.suggested_[j]]
        a_lab = api_labels is not None and api_labels[j] >= 0 and classes[api_labels[j]] or None
        a_conf = float(api_confidence[j]) if a_lab and api_confidence is not None else None
        rows.append({
            "id": int(ids[j]), "score": float(det.scores_[j]), "given_label": given, "suggested_label": sugg,
            "flagged": int(det.flagged_[j]), "posterior": float(det.posterior_[j]),
            "p_given": float(det.distribution_[j, y[j]]),
            "p_suggested": float(det.distribution_[j, det.suggested_[j]]),
            "cl_self_confidence": float(pred[j, y[j]]), "cl_normalized_margin": float(nm[j]),
            "cl_issue": int(det.cleanlab_issues_[j]), "knn_agreement": float(knn_p[j, y[j]]),
            "cluster_id": int(cluster_ids[j]) if cluster_ids is not None else None,
            "cluster_purity": None if np.isnan(purity[j]) else float(purity[j]),
            "api_label": a_lab, "api_confidence": a_conf,
            "reason": issue_reason(given, sugg, float(pred[j, y[j]]),
                                   float(pred[j, det.suggested_[j]]),
                                   int(round(knn_p[j, det.suggested_[j]] * k)),
                                   int(round(knn_p[j, y[j]] * k)), k, a_lab, a_conf, purity[j]),
        })
    rows.sort(key=lambda row: -row["score"])
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
    return rows
