"""The ``queue`` signal: unannotated utterances in the recommended labelling order.

The order covers the data fastest (weighted facility location on the run's kNN graph,
:func:`hl_debug.scoring.queue.rank_queue`): each pick is the unannotated row whose label
would cover the most unlabelled, uncertain rows around it that no annotated or earlier
queued row covers yet. Rows the ``oos`` signal (when it ran) flags as out-of-scope get no
pre-selected label and a column ``oos_group_id``; one per group keeps its place, the rest
follow the in-scope rows. Without it, rows that fit no intent (``fits_no_intent``) get no
pre-selected label either.
"""

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
        Column("score", float, "coverage gain when picked, relative to the first pick's"),
        Column("predicted_label", str, "the active endpoint's label (else the classifier's); "
                                       "none for rows that fit no intent"),
        Column("reason", str, "why it is where it is, in words"),
        Column("uncertainty", float),
        Column("coverage", float, "unlabelled share around it"),
        Column("cluster_id", int),
        Column("near_duplicate_of", int, "an earlier pick it nearly duplicates"),
        Column("oos_group_id", int, "its out-of-scope candidate group (the oos signal's)"),
    ),
    orders={"rank": (("rank", False),)},
)

#: Weight of covering a row = (this + its uncertainty) × its density (so certain rows still
#: count for coverage, and an outlier that resembles nothing counts little).
UNCERTAINTY_FLOOR = 0.3
#: Inverse regularisation of the queue's classifier (the local model's default C).
CLASSIFIER_C = 10.0


def oos_candidates(context: SignalContext, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``is_candidate`` and ``group_id`` (-1: none) of each queue candidate from the ``oos``
    signal's result, or None when it did not run in this run."""
    result = context.results.get("oos")
    if result is None:
        return None
    if not result.columns:  # skipped (fewer than two intents): nothing flagged
        return np.zeros(len(candidates), dtype=bool), np.full(len(candidates), -1, dtype=np.int64)
    is_cand = np.asarray(result.columns["is_candidate"])[candidates].astype(bool)
    group = np.asarray(result.columns["group_id"], dtype=np.float64)[candidates]
    return is_cand, np.where(group == group, group, -1).astype(np.int64)


@register
class Queue(Signal):
    name = "queue"
    reads_rows_of = ("oos",)  # its candidates' is_candidate and group_id (oos_candidates)
    description = "The annotation queue: unannotated utterances in recommended labelling order."
    table = QUEUE
    columns = ("id", "text", "predicted_label", "score", "reason")
    defaults = {
        "k": Knob(20, "Neighbours for label agreement and queue coverage.", int, min=1),
        "queue_duplicate_threshold": Knob(0.9, "Cosine similarity at/above which a candidate counts as a "
                                               "near-duplicate of an earlier pick (moved to the end).",
                                           min=0, max=1, min_open=True),
        "queue_graph_k": Knob(32, "Neighbours a queued row counts as covering (the coverage graph's width).",
                              int, min=1),
        "queue_no_fit_quantile": Knob(0.02, "Without the oos signal: a row whose nearest annotated row is "
                                            "less similar than this share of annotated rows' nearest "
                                            "annotated neighbour fits no intent (no label pre-selected).",
                                      min=0, max=1, min_open=True),
    }
    evidence = Evidence(QUEUE, {"queue_rank": "rank", "queue_reason": "reason"})
    k: int
    queue_duplicate_threshold: float
    queue_graph_k: int
    queue_no_fit_quantile: float

    def find(self, context: SignalContext) -> SignalResult:
        classes, rows_idx, y_all = context.classes, context.scorable, context.y
        cand = np.flatnonzero(~context.annotated)
        if not len(cand) or not len(rows_idx) or len(set(y_all[rows_idx])) < 2:
            return SignalResult(counts={"n_queue": 0})
        X, clusters = context.vectors, context.cluster_ids
        from sklearn.linear_model import LogisticRegression

        from hl_debug.scoring.queue import coverage_graph, coverage_scores, density, rank_queue, uncertainty_from_probs
        from hl_debug.scoring.queue_rows import fits_no_intent, place_out_of_scope, queue_rows

        with limit_threads(1):  # see hl_debug.threads
            clf = LogisticRegression(C=CLASSIFIER_C, tol=1e-3, max_iter=500).fit(X[rows_idx], y_all[rows_idx])
            probs = np.zeros((len(cand), len(classes)))
            probs[:, clf.classes_] = clf.predict_proba(X[cand])
        unc = np.clip(uncertainty_from_probs(probs, method="entropy"), 0, 1)
        k = min(self.k, len(context) - 1)
        width = min(max(self.queue_graph_k, k), len(context) - 1)
        idx, sim = context.neighbors(width) if width >= 1 else (np.zeros((len(context), 0), dtype=np.int64),
                                                                 np.zeros((len(context), 0)))
        cov_all, knn_lab = coverage_scores(X, context.annotated, k=self.k, cluster_ids=clusters,
                                           neighbors=idx[:, :k] if k >= 1 else None)
        weights = np.ones(len(context))
        weights[cand] = UNCERTAINTY_FLOOR + unc
        weights *= density(sim[:, :self.queue_graph_k])  # an outlier's label is worth little
        graph = coverage_graph(idx[:, :self.queue_graph_k], sim[:, :self.queue_graph_k])
        ranked = rank_queue(graph, candidates=cand, labeled=context.annotated, weights=weights,
                            groups=probs.argmax(axis=1),
                            duplicate_threshold=self.queue_duplicate_threshold)
        oos = oos_candidates(context, cand)
        no_fit, nearest, threshold = fits_no_intent(idx, sim, context.annotated, quantile=self.queue_no_fit_quantile)
        if oos is not None:
            ranked = place_out_of_scope(ranked, candidate=oos[0], group=oos[1])
        # The predicted label shown is the active endpoint's (the model being debugged).
        active = context.predictions_of(context.active_endpoint)
        rows = queue_rows(ranked, candidates=cand, ids=context.ids, texts=context.texts, probs=probs,
                          uncertainty=unc, coverage=cov_all, knn_labeled=knn_lab, classes=classes, k=k,
                          predicted=active.labels if active is not None else None, cluster_ids=clusters,
                          annotated=context.annotated, no_fit=no_fit, nearest=nearest, threshold=threshold,
                          oos_candidate=oos[0] if oos is not None else None,
                          oos_group=oos[1] if oos is not None else None)
        counts = {"n_queue": len(rows), "n_queue_unlabelled": sum(r["predicted_label"] is None for r in rows)}
        return SignalResult(rows=rows, counts=counts)

    def summary(self, counts: Mapping[str, Any], report: Mapping[str, Any] | None = None) -> str:
        return f"Annotation queue: {counts['n_queue']} rows"
