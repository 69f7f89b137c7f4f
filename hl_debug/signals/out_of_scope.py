"""The ``oos`` and ``new_intents`` signals: which utterances fit none of the intents, and which
new intents would cover them.

``oos`` scores every utterance (annotated or not) for being out of scope: several pieces of
evidence (similarity to the nearest annotated rows, a class-conditional Mahalanobis distance,
the classifier's maximum softmax probability and energy, and how much unannotated traffic
surrounds the row) combined by a model learned on intents held out in turn, so that the
score comes with an estimated false-positive rate on in-scope traffic
(:mod:`hl_debug.scoring.out_of_scope`). Rows at or under the target false-positive rate
(knob ``oos_target_fpr``) are candidates; the unannotated candidates are grouped.

``new_intents`` lists those groups: size, keywords, representative utterances, the nearest
existing intents and a verdict ("new intent" or "missing phrasing of <intent>"). Its rows
come from the ``oos`` result of the same run (``context.results["oos"]``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, overload

from hl_debug.signals.base import Knob, Signal, SignalResult
from hl_debug.signals.context import SignalContext
from hl_debug.signals.registry import register
from hl_debug.storage.schema import Column, Evidence, Table

if TYPE_CHECKING:
    import numpy as np

OOS = Table(
    "oos",
    (
        Column("id", int, "utterance id"),
        Column("rank", int, "1 = most likely out of scope"),
        Column("oos_score", float, "0..1, higher = more likely out of scope"),
        Column("fpr", float, "estimated share of in-scope traffic scoring at or above this row"),
        Column("annotated", int, "1: the row has a given intent"),
        Column("is_candidate", int, "1: flagged at the target false-positive rate"),
        Column("group_id", int, "its candidate group (empty: not a candidate, or in no group)"),
        Column("nearest_intent", str, "the intent of its most similar annotated row"),
        Column("nearest_similarity", float, "cosine similarity to that row"),
        Column("reason", str, "what the evidence says, in words"),
        Column("knn_similarity", float, "mean cosine similarity to the nearest annotated rows"),
        Column("mahalanobis", float, "class-conditional Mahalanobis distance to the nearest intent"),
        Column("max_probability", float, "the classifier's top posterior (the shared-covariance Gaussian one)"),
        Column("unannotated_share", float, "share of its nearest neighbours that are unannotated"),
    ),
    orders={"score": (("oos_score", True),), "rank": (("rank", False),)},
    indexes=(("group_id",),),
)

NEW_INTENTS = Table(
    "new_intents",
    (
        Column("group_id", int, "1, 2, ... largest group first"),
        Column("rank", int, "1 = the group to look at first"),
        Column("size", int, "candidate utterances in the group"),
        Column("keywords", str, "comma-separated class-based TF-IDF keywords"),
        Column("nearest_intents", str, "existing intents nearest the group, with cosine similarity"),
        Column("examples", str, "representative utterances joined with ' | '"),
        Column("verdict", str, "'new intent' or 'missing phrasing of <intent>'"),
        Column("ids", str, "JSON list of the member utterance ids"),
    ),
    pk=("group_id",),
    orders={"rank": (("rank", False),), "size": (("size", True),)},
)


def _reason(candidate: bool, fpr: float, sim: float, intent: str | None, unannotated: float) -> str:
    head = "fits no intent" if candidate else "in scope"
    near = f"nearest annotated row {sim:.2f} ({intent})" if intent is not None else "no annotated row near"
    around = f", {unannotated:.0%} of its neighbours unannotated" if unannotated == unannotated else ""
    return f"{head}: {near}{around}; {fpr:.1%} of in-scope traffic scores this high"


def out_of_scope_result(context: SignalContext, *, target_fpr: float, k: int, n_folds: int, min_group_size: int,
                        max_calibration_rows: int | None = 20_000, random_state: int = 0,
                        ) -> tuple[dict[str, Sequence[Any] | np.ndarray], list[dict[str, Any]], dict[str, Any]]:
    """The ``oos`` table's columns (row ``i``: the context's row ``i``), the ``new_intents``
    rows and the ``out_of_scope`` report of ``context``."""
    import numpy as np

    from hl_debug.scoring.new_intents import (
        SPLIT_SIZE,
        calibrated_cut,
        describe_groups,
        group_candidates,
        intent_spread,
        typical_intent_size,
    )
    from hl_debug.scoring.out_of_scope import EVIDENCE, OutOfScopeDetector, estimate_share

    annotated = context.annotated
    n_unannotated = int((~annotated).sum())
    report: dict[str, Any] = {
        "target_fpr": target_fpr, "threshold": None, "n_candidates": 0, "n_candidates_unannotated": 0,
        "n_unannotated": n_unannotated, "estimated_share": None, "estimated_share_low": None,
        "estimated_share_high": None, "n_groups": 0}
    if len(context.classes) < 2 or len(context) < 3:
        report["skipped"] = "out-of-scope scoring needs at least two annotated intents"
        return {}, [], report
    graph = context.neighbors(min(k, len(context) - 1))
    det = OutOfScopeDetector(k=k, n_folds=n_folds, target_fpr=target_fpr, max_calibration_rows=max_calibration_rows,
                             two_hops=context.approximate_graph, random_state=random_state)
    det.fit(context.vectors, context.y, graph=graph)
    cand = det.candidates_
    members = np.flatnonzero(cand & ~annotated)
    spread = intent_spread(context.vectors, context.y)
    cut = calibrated_cut(context.vectors, context.y, n_candidates=len(members), min_size=min_group_size,
                         ceiling=spread, random_state=random_state)
    group_of = group_candidates(context.vectors[members], threshold=spread, min_size=min_group_size,
                                fine_threshold=cut,
                                split_size=SPLIT_SIZE * typical_intent_size(context.y, len(members)),
                                random_state=random_state)
    groups = describe_groups(context.vectors, context.texts, context.ids, members, group_of, y=context.y,
                             classes=context.classes)
    group_id = np.full(len(context), -1, dtype=np.int64)
    group_id[members] = group_of
    cal_in, cal_out, cal_cls = det.calibration_scores_
    share = estimate_share(cand[~annotated], tpr=det.tpr_, fpr=det.fpr_at_threshold_, cal_in=cal_in,
                           cal_out=cal_out, cal_out_groups=cal_cls, threshold=det.threshold_,
                           random_state=random_state)
    report.update({
        "threshold": det.threshold_, "n_candidates": int(cand.sum()), "n_candidates_unannotated": len(members),
        "estimated_share": share[0], "estimated_share_low": share[1], "estimated_share_high": share[2],
        "n_groups": len(groups), "group_cut": spread, "group_split_cut": cut, "estimated_recall": det.tpr_, "fpr_at_threshold": det.fpr_at_threshold_,
        "n_calibration_pseudo": len(cal_out),
        "n_new_intents": sum(g["verdict"] == "new intent" for g in groups), "evidence": det.columns_})
    order = np.lexsort((context.ids, -det.scores_))
    rank = np.empty(len(context), dtype=np.int64)
    rank[order] = np.arange(1, len(context) + 1)
    ev = det.evidence_
    col = {name: ev[:, j] for j, name in enumerate(EVIDENCE)}
    near = det.nearest_
    names = np.array([*context.classes, None], dtype=object)  # -1: no annotated row near
    nearest_intent = names[np.where(near >= 0, context.y[np.maximum(near, 0)], -1)]
    max_p = col["max_probability"]
    columns: dict[str, Sequence[Any] | np.ndarray] = {
        "id": context.ids, "rank": rank, "oos_score": det.scores_, "fpr": det.fpr_,
        "annotated": annotated.astype(np.int64), "is_candidate": cand.astype(np.int64),
        "group_id": np.where(group_id >= 0, group_id + 1.0, np.nan),  # NaN: NULL, no group
        "nearest_intent": nearest_intent, "nearest_similarity": det.nearest_similarity_,
        "reason": _Reasons(cand, det.fpr_, det.nearest_similarity_, nearest_intent, col["unannotated_share"]),
        "knn_similarity": col["knn_similarity"], "mahalanobis": col["mahalanobis"],
        "max_probability": np.where(max_p == max_p, max_p, col["gaussian_probability"]),
        "unannotated_share": col["unannotated_share"]}
    return columns, groups, report


class _Reasons(Sequence[str]):
    """The ``reason`` column, worded a slice at a time as the table is written (a million
    strings held at once would be ~150 MB)."""

    def __init__(self, candidate: Any, fpr: Any, similarity: Any, intent: Any, unannotated: Any) -> None:
        self._cols = (candidate, fpr, similarity, intent, unannotated)

    def __len__(self) -> int:
        return len(self._cols[0])

    @overload
    def __getitem__(self, i: int) -> str: ...

    @overload
    def __getitem__(self, i: slice) -> list[str]: ...

    def __getitem__(self, i: int | slice) -> str | list[str]:
        if isinstance(i, slice):
            return [_reason(bool(c), float(f), float(s), n, float(u))
                    for c, f, s, n, u in zip(*(col[i] for col in self._cols))]
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        c, f, s, n, u = (col[i] for col in self._cols)
        return _reason(bool(c), float(f), float(s), n, float(u))


@dataclass
class OutOfScopeResult(SignalResult):
    """The ``oos`` signal's result, plus its candidate groups (``new_intents`` rows) for the
    ``new_intents`` signal of the same run. Its table comes as ``columns``, row ``i`` the
    context's row ``i`` (the queue reads ``is_candidate`` and ``group_id`` off them)."""

    groups: list[dict[str, Any]] = field(default_factory=list)


@register
class OutOfScope(Signal):
    name = "oos"
    aliases = ("out_of_scope",)
    description = "Out-of-scope scores: one row per utterance, most likely out of scope first."
    table = OOS
    columns = ("id", "text", "annotated", "oos_score", "fpr", "is_candidate", "group_id", "nearest_intent",
               "nearest_similarity", "intent", "usage", "reason")
    order = "score"
    defaults = {
        "oos_target_fpr": Knob(0.05, "Estimated share of in-scope traffic flagged as out of scope (the "
                                     "candidates' threshold).", min=0, max=0.5, min_open=True),
        "oos_k": Knob(10, "Neighbours for the out-of-scope evidence.", int, min=1),
        "oos_folds": Knob(5, "Folds of intents held out to calibrate the out-of-scope score.", int, min=2),
        "oos_min_group_size": Knob(3, "Smallest group of out-of-scope candidates listed as a new intent.", int,
                                   min=2),
        "oos_max_calibration_rows": Knob(20_000, "Annotated rows at most scored again as pseudo out-of-scope rows "
                                                 "to calibrate the score (a proportional sample above it).", int,
                                         min=1),
        "random_state": Knob(0, "Random seed of the label-issue detector.", int),
    }
    evidence = Evidence(OOS, {"oos_score": "oos_score", "oos_group": "group_id"})
    report_name = "out_of_scope"
    oos_target_fpr: float
    oos_k: int
    oos_folds: int
    oos_min_group_size: int
    oos_max_calibration_rows: int
    random_state: int

    def find(self, context: SignalContext) -> SignalResult:
        columns, groups, report = out_of_scope_result(
            context, target_fpr=self.oos_target_fpr, k=self.oos_k, n_folds=self.oos_folds,
            min_group_size=self.oos_min_group_size, max_calibration_rows=self.oos_max_calibration_rows,
            random_state=self.random_state)
        counts = {"n_oos_candidates": report["n_candidates"],
                  "n_oos_candidates_unannotated": report["n_candidates_unannotated"],
                  "n_oos_groups": report["n_groups"]}
        return OutOfScopeResult(columns=columns, report=json.loads(json.dumps(report, default=float)),
                                counts=counts, groups=groups)

    def summary(self, counts: Mapping[str, Any], report: Mapping[str, Any] | None = None) -> str:
        share = (report or {}).get("estimated_share")
        low, high = (report or {}).get("estimated_share_low"), (report or {}).get("estimated_share_high")
        est = (f"; estimated out-of-scope share of unannotated traffic {share:.0%} ({low:.0%}-{high:.0%})"
               if isinstance(share, float) and isinstance(low, float) and isinstance(high, float) else "")
        return (f"Out of scope: {counts['n_oos_candidates_unannotated']} unannotated candidates in "
                f"{counts['n_oos_groups']} groups{est}")


@register
class NewIntents(Signal):
    name = "new_intents"
    description = "Candidate new intents: groups of out-of-scope utterances with keywords and nearest intents."
    table = NEW_INTENTS
    columns = ("group_id", "size", "keywords", "nearest_intents", "examples", "verdict")
    order = "rank"

    def find(self, context: SignalContext) -> SignalResult:
        oos = context.results.get("oos")
        groups = list(getattr(oos, "groups", [])) if oos is not None else []
        return SignalResult(rows=groups, counts={"n_new_intents": sum(g["verdict"] == "new intent" for g in groups)})

    def summary(self, counts: Mapping[str, Any], report: Mapping[str, Any] | None = None) -> str:
        return f"Candidate new intents: {counts['n_new_intents']}"
