"""The ``issues`` signal: annotated utterances whose label is probably wrong, most
suspicious first, with a suggested label and the evidence (classifier, neighbours,
cluster, prediction API). Its summary report ``label_issues`` holds the estimated number of
label errors with its interval, the flag count and the flagged rows' estimated precision and
recall (:func:`label_issue_summary`)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from hl_debug.domain import OUT_OF_SCOPE
from hl_debug.signals.base import Flag, Knob, Signal, SignalResult
from hl_debug.signals.context import SignalContext
from hl_debug.signals.registry import register
from hl_debug.storage.schema import Column, Evidence, Table

log = logging.getLogger(__name__)

ISSUES = Table(
    "issues",
    (
        Column("id", int, "utterance id"),
        Column("rank", int, "1 = most suspicious"),
        Column("score", float, "issue score (higher = more likely mislabelled)"),
        Column("given_label", str),
        Column("suggested_label", str, "the most likely other label"),
        Column("flagged", int, "1: flagged (the posterior threshold with the best expected F1, or the target precision)"),
        Column("reason", str, "what the evidence says, in words"),
        Column("posterior", float, "calibrated probability that the label is wrong"),
        Column("p_given", float),
        Column("p_suggested", float),
        Column("cl_self_confidence", float),
        Column("cl_normalized_margin", float),
        Column("cl_issue", int, "1: cleanlab's find_label_issues flags it"),
        Column("knn_agreement", float, "share of the neighbours with the same label"),
        Column("cluster_id", int),
        Column("cluster_purity", float),
        Column("api_label", str),
        Column("api_confidence", float),
    ),
    orders={"score": (("score", True),), "rank": (("rank", False),)},
)


@dataclass
class IssuesResult(SignalResult):
    """The ``issues`` signal's result, plus the detector's out-of-fold probabilities of the
    context's scorable rows (``pred_probs``, shape (n_scorable, n_classes); None when it did
    not run) and the seed of their folds, so a later signal of the run (the taxonomy advisor)
    reuses them instead of fitting the same 5-fold classifier again."""

    pred_probs: np.ndarray | None = None
    random_state: int | None = None


@register
class LabelIssues(Signal):
    name = "issues"
    aliases = ("label_issues",)
    description = "Suspected label errors: one row per annotated utterance, most suspicious first."
    table = ISSUES
    columns = ("id", "text", "given_label", "suggested_label", "score", "flagged", "posterior", "p_given",
               "p_suggested", "cl_self_confidence", "cl_normalized_margin", "cl_issue", "knn_agreement",
               "cluster_id", "cluster_purity", "api_label", "api_confidence", "reason")
    order = "score"
    flags = (Flag("flagged-only", {"flagged": 1}, "Only the rows flagged as likely errors."),)
    defaults = {
        "k": Knob(20, "Neighbours for label agreement and queue coverage.", int, min=1),
        "n_synthetic": Knob(2, "Rounds of synthetic label flips the flags are calibrated on.", int, min=1),
        "random_state": Knob(0, "Random seed of the label-issue detector.", int),
        "target_precision": Knob(None, "Flag the most rows whose estimated precision is at least this "
                                 "(default: the flags with the best expected F1).", float, min=0, max=1, min_open=True),
    }
    evidence = Evidence(ISSUES, {"issue_score": "score", "suggested_label": "suggested_label", "flagged": "flagged",
                                 "issue_reason": "reason", "issue_rank": "rank"})
    report_name = "label_issues"
    k: int
    n_synthetic: int
    random_state: int
    target_precision: float | None

    def find(self, context: SignalContext) -> SignalResult:
        from hl_debug.scoring.issue_rows import issue_rows
        from hl_debug.scoring.label_detector import LabelIssueDetector
        from hl_debug.scoring.label_issues import cluster_label_agreement, encode_labels

        classes, rows_idx = context.classes, context.scorable
        y_all = context.y
        det = None
        skipped: str | None = None if len(set(y_all[rows_idx])) >= 2 else "fewer than two intents with two rows"
        rows: list[dict[str, Any]] = []
        if len(rows_idx) and len(set(y_all[rows_idx])) >= 2:
            y = y_all[rows_idx]
            api = context.predictions_of(context.api_endpoint)
            api_labels = api_conf = None
            if api is not None:
                api_labels = encode_labels([api.labels[i] for i in rows_idx], classes)
                api_conf = np.asarray(api.confidence, dtype=float)[rows_idx]
            clusters = context.cluster_ids[rows_idx] if context.cluster_ids is not None else None
            det = LabelIssueDetector(k=self.k, n_synthetic=self.n_synthetic, random_state=self.random_state,
                                     target_precision=self.target_precision)
            # neighbours among the annotated rows, read off the run's kNN graph
            nbrs = context.subset_neighbors(rows_idx, min(self.k, len(rows_idx) - 1))
            try:
                det.fit(context.vectors[rows_idx], y, n_classes=len(classes), neighbors=nbrs, cluster_ids=clusters,
                        api_labels=api_labels, api_confidence=api_conf)
            except ValueError as exc:  # data too small or degenerate to calibrate on: no flags, said why
                log.warning("label issues: not scored (%s)", exc)
                skipped = str(exc)
                det = None
        if det is not None:
            purity = (cluster_label_agreement(y, clusters, n_classes=len(classes)) if clusters is not None
                      else None)
            rows = issue_rows(det, ids=context.ids[rows_idx], labels=y, classes=classes, k=min(self.k, len(y) - 1),
                              cluster_ids=clusters, cluster_purity=purity, api_labels=api_labels,
                              api_confidence=api_conf)
        n_flagged = int(det.flagged_.sum()) if det is not None else 0
        summary = {
            **label_issue_summary(det), "target_precision": self.target_precision,
            "n_scored": len(rows), "api_endpoint": context.api_endpoint,
            "uses_clusters": context.cluster_ids is not None,
            "n_cleanlab_issues": int(det.cleanlab_issues_.sum()) if det is not None else 0,
            "not_scored_single_row_intents": [classes[c] for c in np.flatnonzero(context.class_counts == 1)],
            "not_scored_reason": skipped,
        }
        return IssuesResult(rows=rows, report=json.loads(json.dumps(summary, default=float)),
                            counts={"n_issues_scored": len(rows), "n_flagged": n_flagged},
                            pred_probs=det.pred_probs_ if det is not None else None, random_state=self.random_state)

    def summary(self, counts: Mapping[str, Any], report: Mapping[str, Any] | None = None) -> str:
        report = report or {}
        prec, rec = report.get("estimated_precision"), report.get("estimated_recall")
        total, low, high = (report.get(k) for k in ("estimated_errors", "estimated_errors_low", "estimated_errors_high"))
        line = f"Scored {counts['n_issues_scored']} annotated rows: {counts['n_flagged']} flagged as likely errors"
        if report.get("not_scored_reason") and not counts["n_issues_scored"]:
            return f"{line} (not scored: {report['not_scored_reason']})"
        if _number(prec) and _number(rec):
            line += f" (estimated precision {prec:.0%}, recall {rec:.0%})"
        if _number(total) and _number(low) and _number(high):
            line += f"; estimated label errors {total:.0f} ({low:.0f}-{high:.0f})"
        return line


#: The keys of the ``label_issues`` summary (also a top-level key of the model report).
SUMMARY_KEYS = ("estimated_errors", "estimated_errors_low", "estimated_errors_high", "n_flagged",
                "estimated_precision", "estimated_recall")


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and v == v


def label_issue_summary(det: Any) -> dict[str, Any]:
    """The headline figures of a fitted detector (None where it did not run or a figure is
    undefined): :data:`SUMMARY_KEYS` plus the estimated error rate, the flag threshold, the
    confident joint's count and its response to the synthetic flips (the count is the one over
    the other, ``count="replica"``), and the unanchored EM count (``em_errors``: how the errors
    remaining spread the count over the rows)."""
    if det is None:
        return {**dict.fromkeys(SUMMARY_KEYS), "n_flagged": 0, "estimated_error_rate": None, "flag_threshold": None,
                "confident_joint_count": None, "count_response": None, "em_errors": None}
    values = {"estimated_errors": det.estimated_errors_, "estimated_errors_low": det.estimated_errors_low_,
              "estimated_errors_high": det.estimated_errors_high_, "n_flagged": int(det.flagged_.sum()),
              "estimated_precision": det.estimated_precision_, "estimated_recall": det.estimated_recall_,
              "estimated_error_rate": det.noise_rate_, "flag_threshold": det.threshold_,
              "confident_joint_count": getattr(det, "confident_joint_count_", None),
              "count_response": getattr(det, "count_response_", None),
              "em_errors": getattr(det, "em_estimated_errors_", None)}
    return {k: (None if isinstance(v, float) and v != v else v) for k, v in values.items()}


#: The errors-remaining keys added to the ``label_issues`` figures of ``export report``.
REMAINING_KEYS = ("errors_remaining", "errors_remaining_low", "errors_remaining_high")


def errors_remaining_of(store: Any, *, last_n: int = 50) -> dict[str, Any] | None:
    """Errors remaining after the review so far (:func:`~hl_debug.scoring.remaining.errors_remaining`)
    from the stored ``issues`` table (each scored row's calibrated posterior) and the review
    log (:meth:`~hl_debug.storage.reviews.Reviews.review_outcomes`): a scored row whose label a
    reviewer changed was an error, one kept was right; unreviewed rows count with their
    posterior. None when the issues signal has not scored any row.

    The interval adds, on each side, the detector's own relative uncertainty of the count
    (the half-width of its interval over its estimate): the calibration's error does not
    shrink as rows are reviewed. The count is spread over the rows as the detector's
    unanchored (EM) posteriors spread it (``spread_total``; stored summaries without
    ``em_errors`` keep the anchored spread).
    """
    from hl_debug.scoring.remaining import errors_remaining

    rows = store.table_rows(ISSUES)
    if not rows:
        return None
    index = {r["id"]: i for i, r in enumerate(rows)}
    posterior = np.array([r.get("posterior") or 0.0 for r in rows], dtype=float)
    decided: dict[int, bool] = {}
    for out in store.review_outcomes():
        i = index.get(out["utterance_id"])
        if i is not None:
            decided.pop(i, None)  # keep the decision order of the latest decision
            decided[i] = out["action"] == OUT_OF_SCOPE or out["label"] != out["original_label"]
    summary = store.report("label_issues")
    bias = 0.0
    if isinstance(summary, dict) and all(_number(summary.get(k)) for k in SUMMARY_KEYS[:3]) \
            and summary["estimated_errors"] > 0:
        bias = (summary["estimated_errors_high"] - summary["estimated_errors_low"]) / 2 / summary["estimated_errors"]
    stored = summary.get("em_errors") if isinstance(summary, dict) else None
    em = float(stored) if isinstance(stored, (int, float)) and stored == stored else None
    # spread the count as the unanchored posteriors do (benchmarks/RESULTS.md, "Review loop"):
    # the top of the list is calibrated, so the anchoring's shortfall stays with the tail
    return errors_remaining(posterior, decided, order=list(decided), last_n=last_n, relative_bias=bias,
                            spread_total=em if em is not None and em > 0 else None)


def remaining_figures(store: Any) -> dict[str, Any]:
    """:data:`REMAINING_KEYS` (None when nothing is scored) plus the review progress
    (``errors_found``, ``n_reviewed``, ``live_precision``, ``last_n``, ``last_found``)."""
    out = errors_remaining_of(store)
    if out is None:
        return dict.fromkeys((*REMAINING_KEYS, "errors_found", "n_reviewed", "live_precision", "last_n",
                              "last_found"))
    return {"errors_remaining": out["estimated"], "errors_remaining_low": out["low"],
            "errors_remaining_high": out["high"], "errors_found": out["n_found"], "n_reviewed": out["n_reviewed"],
            "live_precision": out["live_precision"], "last_n": out["last_n"], "last_found": out["last_found"]}


def live_report(store: Any, report_name: str) -> Any:
    """Stored report ``report_name``; the model report's ``label_issues`` figures get the
    errors remaining (:func:`remaining_figures`) read from the review log now, since they change
    with every decision while the stored report changes only when the signals run. What
    ``hl-debug report``, ``export report`` and ``/api/signals/report`` all return."""
    from hl_debug.signals.model_report import MODEL_REPORT

    body = store.report(report_name)
    if report_name == MODEL_REPORT and isinstance(body, dict) and isinstance(body.get("label_issues"), dict):
        body = {**body, "label_issues": {**body["label_issues"], **remaining_figures(store)}}
    return body
