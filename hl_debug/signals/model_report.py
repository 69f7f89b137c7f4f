"""The ``report`` signal: the model report of every endpoint (per split: per-intent
metrics, confusion matrix, most-confused pairs, reliability; entropy distributions; the
rows without an answer), stored once as ``model_report`` — what ``hl-debug report``,
``hl-debug export report`` and the web app's ``/report`` all show. When the ``issues``
signal ran first, its headline figures are the report's top-level ``label_issues``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hl_debug.domain import REPORT_SPLITS
from hl_debug.signals.base import Knob, Signal, SignalResult
from hl_debug.signals.context import SignalContext
from hl_debug.signals.registry import register

#: The stored report's name.
MODEL_REPORT = "model_report"


@register
class ModelReport(Signal):
    name = "report"
    description = "The full model report (every endpoint, every split) as JSON."
    defaults = {
        "n_pairs": Knob(10, "Most-confused intent pairs listed per split in the model report.", int, min=0),
        "n_examples": Knob(3, "Example utterances per confused pair in the model report.", int, min=0),
    }
    report_name = MODEL_REPORT
    n_pairs: int
    n_examples: int

    def find(self, context: SignalContext) -> SignalResult:
        from hl_debug.scoring.report import model_report

        ids, texts = context.ids.tolist(), context.texts
        reports = [model_report(ids=ids, texts=texts, given=context.labels, usage=context.splits,
                                predicted=p.labels, confidence=p.confidence, entropy=p.entropy,
                                endpoint=p.endpoint, splits=REPORT_SPLITS, n_pairs=self.n_pairs,
                                n_examples=self.n_examples)
                   for p in context.predictions.values()]
        body: dict[str, Any] = {"active_endpoint": context.active_endpoint, "endpoints": reports}
        issues = context.results.get("issues")
        if issues is not None and issues.report is not None:
            # The label-issue headline (estimated errors with interval, flags, estimated
            # precision and recall) travels with the report: `export report` and /report.
            from hl_debug.signals.label_issues import SUMMARY_KEYS

            body["label_issues"] = {k: issues.report.get(k) for k in SUMMARY_KEYS}
        return SignalResult(report=body, counts={"n_endpoints_reported": len(reports)})

    def summary(self, counts: Mapping[str, Any], report: Mapping[str, Any] | None = None) -> str:
        return f"Model report for {counts['n_endpoints_reported']} endpoint(s)"


def endpoint_report(body: Mapping[str, Any] | None, endpoint: str | None) -> dict[str, Any] | None:
    """The report of ``endpoint`` (default: the stored active one) from a stored body, or None."""
    if not body:
        return None
    endpoint = endpoint or body.get("active_endpoint")
    return next((r for r in body.get("endpoints", []) if r.get("endpoint") == endpoint), None)
