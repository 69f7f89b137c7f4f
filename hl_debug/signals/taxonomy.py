"""The ``taxonomy`` signal: the taxonomy advisor — which intents to merge, which to split
and which boundaries need a written rule, most important first.

Its table ``taxonomy`` holds the findings (one row each: ``kind`` merge / split /
boundary, the intents, a score, the rows in question, the evidence in words, the advice
and the utterance ids it concerns); its report ``taxonomy`` holds what a page needs beyond
that: the intent x intent overlap matrix of every evidence source (a heatmap's cells), the
50 most overlapping pairs' merge records with near-identical utterances labelled
differently, every intent's split record with its groups (keywords, size, up to 2,000
member ids nearest the group's centroid first, the rows labelled elsewhere) and every
confusable pair's boundary rule with its violators.

The out-of-fold probabilities are computed here: the ``issues`` signal's result carries
per-row scores only, not its probability matrix.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from hl_debug.signals.base import Knob, Signal, SignalResult
from hl_debug.signals.context import SignalContext
from hl_debug.signals.registry import register
from hl_debug.storage.schema import Column, Table

log = logging.getLogger(__name__)

TAXONOMY = Table(
    "taxonomy",
    (
        Column("id", int, "finding number (= rank)"),
        Column("rank", int, "1 = most important (most rows in question)"),
        Column("kind", str, "merge, split or boundary"),
        Column("intent_a", str),
        Column("intent_b", str, "the other intent of a pair; empty for a split"),
        Column("score", float, "merge/boundary: symmetric overlap of the pair; split: distinctness of its groups"),
        Column("n_rows", int, "annotated rows the finding puts in question"),
        Column("evidence", str, "what the evidence says, in words"),
        Column("advice", str, "the suggested change: merge, the new intent, or the guideline"),
        Column("keywords", str, "split: each group's keywords, groups separated by ' | '"),
        Column("examples", str, "example utterances joined with ' | '"),
        Column("ids", str, "JSON list of the utterance ids concerned"),
    ),
    orders={"rank": (("rank", False),), "score": (("score", True),)},
)

_ROUND = 4
_MAX_PAIRS_REPORTED = 50  # pairs of intents in the report, highest overlap first
_MAX_GROUP_IDS = 2000  # member ids kept per split group in the report (nearest its centroid first)


def _r(x: float) -> float | None:
    return None if x is None or x != x else round(float(x), _ROUND)


@register
class Taxonomy(Signal):
    name = "taxonomy"
    description = "Taxonomy advisor: intents to merge, intents to split, boundaries that need a rule."
    table = TAXONOMY
    columns = ("rank", "kind", "intent_a", "intent_b", "score", "n_rows", "evidence", "advice", "keywords",
               "examples", "ids")
    order = "rank"
    defaults = {
        "k": Knob(20, "Neighbours for label agreement and queue coverage.", int, min=1),
        "random_state": Knob(0, "Random seed of the label-issue detector.", int),
        "merge_threshold": Knob(0.25, "Pair overlap (symmetric confusion) at/above which two intents are a "
                                "merge candidate.", min=0, max=1),
        "boundary_threshold": Knob(0.02, "Pair overlap at/above which a pair gets a boundary rule.", min=0, max=1),
        "split_threshold": Knob(0.5, "Distinctness of an intent's two groups (share of intent pairs more "
                                "similar) at/above which it is a split candidate.", min=0, max=1),
        "min_group_size": Knob(8, "Fewest rows of a split candidate's smaller group.", int, min=1),
        "max_pairs": Knob(10, "Most merge/boundary findings.", int, min=0),
    }
    report_name = "taxonomy"
    k: int
    random_state: int
    merge_threshold: float
    boundary_threshold: float
    split_threshold: float
    min_group_size: int
    max_pairs: int

    def find(self, context: SignalContext) -> SignalResult:
        from hl_debug.scoring.label_issues import encode_labels, out_of_fold_probabilities
        from hl_debug.scoring.taxonomy import conflicting_pairs, merge_candidates, pair_overlap, split_candidates
        from hl_debug.scoring.taxonomy_findings import (
            boundary_finding,
            merge_finding,
            rank_findings,
            split_finding,
        )
        from hl_debug.scoring.taxonomy_rules import TermStats, boundary_rule

        classes, rows_idx = context.classes, context.scorable
        K = len(classes)
        empty = SignalResult(rows=[], report={"classes": classes, "n_scored": 0},
                             counts={"n_taxonomy_findings": 0, "n_merge": 0, "n_split": 0, "n_boundary": 0})
        y = context.y[rows_idx]
        if len(rows_idx) < 4 or len(set(y.tolist())) < 2:
            return empty
        texts = [context.texts[i] for i in rows_idx]
        labels = [classes[c] for c in y]
        ids = context.ids[rows_idx]
        issues = context.results.get("issues")  # reuse its out-of-fold probabilities when they are of these rows
        reuse = getattr(issues, "pred_probs", None)
        if reuse is not None and getattr(issues, "random_state", None) == self.random_state and len(reuse) == len(y):
            P = reuse
        else:
            P = out_of_fold_probabilities(context.vectors[rows_idx], y, n_classes=K, random_state=self.random_state)
        self.pred_probs_, self.labels_ = P, y  # for a benchmark's baseline on the same predictions
        nbr_idx, nbr_sim = context.subset_neighbors(rows_idx, min(self.k, len(rows_idx) - 1))
        endpoints = {name: encode_labels([p.labels[i] for i in rows_idx], classes)
                     for name, p in context.predictions.items()}
        overlap = pair_overlap(y, n_classes=K, pred_probs=P, neighbor_idx=nbr_idx, predictions=endpoints)
        counts = np.bincount(y, minlength=K)
        merges = merge_candidates(overlap, classes, counts=counts)
        splits = split_candidates(context.vectors, y, texts, classes, rows=rows_idx,  # no copy of the labelled rows
                                  min_group_size=self.min_group_size, random_state=self.random_state)
        stats = TermStats.fit(texts, y, K)

        findings, rules = [], []
        for rec in [m for m in merges if m["score"] >= self.boundary_threshold][:self.max_pairs]:
            rule = boundary_rule(stats, y, rec["a"], rec["b"], classes)
            rules.append(rule)
            pairs = conflicting_pairs(y, nbr_idx, nbr_sim, rec["a"], rec["b"])
            if rec["score"] >= self.merge_threshold:
                findings.append(merge_finding(rec, pairs, texts=texts, ids=ids, rule=rule))
            elif rule["violators"]:
                findings.append(boundary_finding(rec, rule, pairs, texts=texts, labels=labels, ids=ids))
        findings += [split_finding(s, texts=texts, ids=ids) for s in splits if s["score"] >= self.split_threshold]
        rows = rank_findings(findings)
        for rec in merges[:_MAX_PAIRS_REPORTED]:  # each pair's card: near-identical rows labelled differently
            rec["pairs"] = [[int(ids[i]), int(ids[j]), round(s, _ROUND)]
                            for i, j, s in conflicting_pairs(y, nbr_idx, nbr_sim, rec["a"], rec["b"])]
        report = self._report(classes, counts, overlap, merges, splits, rules, ids)
        n_kind = {kind: sum(r["kind"] == kind for r in rows) for kind in ("merge", "split", "boundary")}
        return SignalResult(rows=rows, report=report, counts={"n_taxonomy_findings": len(rows),
                                                              **{f"n_{k}": v for k, v in n_kind.items()}})

    def _report(self, classes: list[str], counts: np.ndarray, overlap: Mapping[str, np.ndarray],
                merges: list[dict], splits: list[dict], rules: list[dict], ids: np.ndarray) -> dict[str, Any]:
        def id_list(pos: list[int]) -> list[int]:
            return [int(ids[i]) for i in pos]

        return {
            "classes": classes, "counts": [int(c) for c in counts], "n_scored": int(counts.sum()),
            "thresholds": {"merge": self.merge_threshold, "boundary": self.boundary_threshold,
                           "split": self.split_threshold},
            # intent x intent, symmetric; "score" is the merge score (the heatmap's cells)
            "overlap": {src: [[_r(v) for v in row] for row in m] for src, m in overlap.items()},
            "merge": [{k: (_r(v) if isinstance(v, float) else v) for k, v in m.items()}
                      for m in merges[:_MAX_PAIRS_REPORTED]],
            "split": [{"intent": s["intent"], "n": s["n"], "score": _r(s["score"]), "similarity": _r(s["similarity"]),
                       "groups": [{"size": g["size"], "keywords": g["keywords"], "ids": id_list(g["rows"][:_MAX_GROUP_IDS]),
                                   "examples": id_list(g["examples"]), "own_similarity": _r(g["own_similarity"]),
                                   "nearest_intent": g["nearest_intent"],
                                   "nearest_similarity": _r(g["nearest_similarity"]),
                                   "closer_to_other": g["closer_to_other"],
                                   "spread": {k: id_list(v) for k, v in g["spread"].items()}}
                                  for g in s["groups"]]} for s in splits],
            "boundary": [{**{k: v for k, v in r.items() if k != "violators"}, "agreement": _r(r["agreement"]),
                          "violators": id_list(r["violators"])} for r in rules],
        }

    def summary(self, counts: Mapping[str, Any], report: Mapping[str, Any] | None = None) -> str:
        return (f"Taxonomy: {counts['n_taxonomy_findings']} findings ({counts['n_merge']} merge, "
                f"{counts['n_split']} split, {counts['n_boundary']} boundary)")
