"""The ``duplicates`` signal: near-duplicate groups whose labels conflict or that cross the
training/evaluation split (leakage)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hl_debug.neighbors import MIN_K
from hl_debug.signals.base import Knob, Signal, SignalResult
from hl_debug.signals.context import SignalContext
from hl_debug.signals.registry import register
from hl_debug.storage.schema import Column, Table

DUPLICATES = Table(
    "duplicates",
    (
        Column("group_id", int, "1, 2, ... in kind, then size order"),
        Column("id", int, "utterance id"),
        Column("kind", str, "conflicting_labels or split_leakage"),
        Column("similarity", float, "best cosine similarity to another member"),
        Column("intent", str),
        Column("usage", str),
    ),
    # an utterance may sit in a conflicting group and a leakage group at once
    pk=("id", "group_id"),
    orders={"groups": (("kind", False), ("group_id", False), ("id", False))},
)


@register
class Duplicates(Signal):
    name = "duplicates"
    description = "Near-duplicate groups with conflicting labels or crossing training/evaluation splits."
    table = DUPLICATES
    columns = ("group_id", "kind", "id", "text", "intent", "usage", "similarity")
    defaults = {
        "duplicate_threshold": Knob(0.95, "Cosine similarity at/above which two utterances are near-duplicates.",
                                    min=0, max=1, min_open=True),
    }
    duplicate_threshold: float

    def find(self, context: SignalContext) -> SignalResult:
        from hl_debug.scoring.duplicates import duplicate_groups, group_rows

        groups = duplicate_groups(context.vectors, labels=context.labels, usages=context.splits,
                                  threshold=self.duplicate_threshold,
                                  neighbors=context.neighbors(MIN_K) if len(context) > 1 else None)
        rows = group_rows(groups, ids=context.ids, labels=context.labels, usages=context.splits)
        return SignalResult(rows=rows, counts={
            "n_conflicting_groups": sum(g["kind"] == "conflicting_labels" for g in groups),
            "n_leakage_groups": sum(g["kind"] == "split_leakage" for g in groups)})

    def summary(self, counts: Mapping[str, Any], report: Mapping[str, Any] | None = None) -> str:
        return (f"Near-duplicates: {counts['n_conflicting_groups']} groups with conflicting labels, "
                f"{counts['n_leakage_groups']} crossing training/evaluation splits")
