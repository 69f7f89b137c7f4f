"""The ``queue`` signal: unannotated utterances in the recommended labelling order (model
uncertainty × how little annotation surrounds them, diversified)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from hl_debug.signals.base import Knob, Signal, SignalResult
from hl_debug.signals.context import SignalContext
from hl_debug.signals.registry import register
from hl_debug.storage.schema import Column, Evidence, Table
from hl_debug.threads import limit_threads

QUEUE = Table(
    "queue",
    (
        Column("id", int, "utterance id"),
        Column("rank", int, "1 = label first"),
        Column("score", float, "diversity-adjusted priority when picked"),
        Column("predicted_label", str, "the active endpoint's label (else the classifier's)"),
        Column("reason", str, "why it is where it is, in words"),
        Column("uncertainty", float),
        Column("coverage", float, "unlabelled share around it"),
        Column("cluster_id", int),
        Column("near_duplicate_of", int, "an earlier pick it nearly duplicates"),
    ),
    orders={"rank": (("rank", False),)},
)


@register
class Queue(Signal):
    name = "queue"
    description = "The annotation queue: unannotated utterances in recommended labelling order."
    table = QUEUE
    columns = ("id", "text", "predicted_label", "score", "reason")
    defaults = {
        "k": Knob(20, "Neighbours for label agreement and queue coverage.", int, min=1),
        "queue_duplicate_threshold": Knob(0.9, "Cosine similarity at/above which a candidate counts as a "
                                               "near-duplicate of an earlier pick (moved to the end).",
                                           min=0, max=1, min_open=True),
    }
    evidence = Evidence(QUEUE, {"queue_rank": "rank", "queue_reason": "reason"})
    k: int
    queue_duplicate_threshold: float

    def find(self, context: SignalContext) -> SignalResult:
        classes, rows_idx, y_all = context.classes, context.scorable, context.y
        cand = np.flatnonzero(~context.annotated)
        if not len(cand) or not len(rows_idx) or len(set(y_all[rows_idx])) < 2:
            return SignalResult(counts={"n_queue": 0})
        X, clusters = context.vectors, context.cluster_ids
        from sklearn.base import clone

        from hl_debug.scoring.label_issues import default_classifier
        from hl_debug.scoring.queue import coverage_scores, queue_rows, rank_queue, uncertainty_from_probs

        with limit_threads(1):  # see hl_debug.threads
            clf = clone(default_classifier()).fit(X[rows_idx], y_all[rows_idx])
        probs = np.zeros((len(cand), len(classes)))
        probs[:, clf.classes_] = clf.predict_proba(X[cand])
        unc = uncertainty_from_probs(probs, method="entropy")
        k = min(self.k, len(context) - 1)
        cov_all, knn_lab = coverage_scores(X, context.annotated, k=self.k, cluster_ids=clusters,
                                           neighbors=context.neighbors(k)[0] if k >= 1 else None)
        ranked = rank_queue(X[cand], uncertainty=np.clip(unc, 0, 1), coverage=cov_all[cand],
                            cluster_ids=clusters[cand] if clusters is not None else None,
                            duplicate_threshold=self.queue_duplicate_threshold)
        # The predicted label shown is the active endpoint's (the model being debugged).
        active = context.predictions_of(context.active_endpoint)
        rows = queue_rows(ranked, candidates=cand, ids=context.ids, texts=context.texts, probs=probs,
                          uncertainty=unc, coverage=cov_all, knn_labeled=knn_lab, classes=classes, k=k,
                          predicted=active.labels if active is not None else None, cluster_ids=clusters,
                          annotated=context.annotated)
        return SignalResult(rows=rows, counts={"n_queue": len(rows)})

    def summary(self, counts: Mapping[str, Any], report: Mapping[str, Any] | None = None) -> str:
        return f"Annotation queue: {counts['n_queue']} rows"
