"""Out-of-scope rows for the web app's tests, on top of :func:`tests.webapp_fixtures.fill_synthetic`.

The ``oos`` and ``new_intents`` signals (``hl_debug/signals/out_of_scope.py``) declare the
tables the ``/discover`` page, the map's colour and the queue read. When those signals are
installed their own tables are used; otherwise :func:`install` registers stand-ins declaring
the tables exactly as the interface in the plan does, so the tests run either way.

The synthetic candidates: group 1 ("new intent") holds the unannotated 1023 (unicode) and
1022 (the ``<img onerror>`` injection); group 2 ("missing phrasing of chat_settings") holds
the unannotated 1021 and the annotated 1016.
"""

from __future__ import annotations

import json

from hl_debug.signals.base import Signal, SignalResult
from hl_debug.signals.registry import get_signal, register, unregister
from hl_debug.storage import Store
from hl_debug.storage.schema import Column, Evidence, Table
from webapp.discover import optional_table

OOS = Table(
    "oos",
    (Column("id", int), Column("rank", int), Column("oos_score", float), Column("fpr", float),
     Column("annotated", int), Column("is_candidate", int), Column("group_id", int),
     Column("nearest_intent", str), Column("nearest_similarity", float), Column("reason", str)),
    orders={"score": (("oos_score", True),), "rank": (("rank", False),)},
)
NEW_INTENTS = Table(
    "new_intents",
    (Column("group_id", int), Column("rank", int), Column("size", int), Column("keywords", str),
     Column("nearest_intents", str), Column("examples", str), Column("verdict", str), Column("ids", str)),
    pk=("group_id",),
    orders={"rank": (("rank", False),)},
)
GROUPS = {1: [1023, 1022], 2: [1021, 1016]}
NEW_GROUP, PHRASING_GROUP = 1, 2
REPORT = {"target_fpr": 0.05, "threshold": 0.62, "n_candidates": 4, "n_candidates_unannotated": 3,
          "n_unannotated": 5, "estimated_share": 0.4, "estimated_share_low": 0.12, "estimated_share_high": 0.77,
          "n_groups": 2}


class StandInScores(Signal):
    name = "oos"
    description = "Stand-in for the out-of-scope scores (tests only)."
    table = OOS
    order = "score"
    evidence = Evidence(OOS, {"oos_score": "oos_score", "oos_group": "group_id"})
    report_name = "out_of_scope"

    def find(self, context) -> SignalResult:
        return SignalResult()


class StandInGroups(Signal):
    name = "new_intents"
    description = "Stand-in for the candidate new intents (tests only)."
    table = NEW_INTENTS

    def find(self, context) -> SignalResult:
        return SignalResult()


def install() -> list[str]:
    """Register the stand-ins for whichever of the two signals is not installed; returns the
    names registered (give them to :func:`uninstall`)."""
    added = []
    for cls in (StandInScores, StandInGroups):
        if optional_table(cls.table.name) is None:
            register(cls)
            added.append(cls.name)
    return added


def uninstall(names: list[str]) -> None:
    for name in names:
        unregister(name)


def queue_table() -> Table:
    """The queue signal's table, with the ``oos_group_id`` column the interface adds to it."""
    queue = get_signal("queue").table
    if "oos_group_id" not in queue.column_names:  # until the queue signal declares it
        queue = Table(queue.name, (*queue.columns, Column("oos_group_id", int)), queue.pk, queue.orders)
    return queue


def fill_oos(store: Store, *, with_groups: bool = True) -> Store:
    """Write the ``oos`` rows (every utterance), the groups and the report into a store
    :func:`fill_synthetic` filled; the queue's candidates lose their pre-selected label and
    carry their group, as the queue signal does when the out-of-scope signal ran."""
    scores, groups = optional_table(OOS.name), optional_table(NEW_INTENTS.name)
    assert scores is not None and groups is not None, "call install() first"
    group_of = {i: g for g, ids in GROUPS.items() for i in ids}
    utterances = store.utterance_rows(["id", "intent"])
    rows = []
    for u in utterances:
        uid = u["id"]
        score = 0.9 - 0.01 * list(group_of).index(uid) if uid in group_of else round(0.05 + (uid % 9) / 30, 3)
        rows.append({"id": uid, "oos_score": score, "fpr": round(1 - score, 3), "annotated": int(bool(u["intent"])),
                     "is_candidate": int(uid in group_of), "group_id": group_of.get(uid),
                     "nearest_intent": "chat_settings", "nearest_similarity": round(1 - score, 3),
                     "reason": "far from every intent" if uid in group_of else "close to its intent"})
    rows.sort(key=lambda r: -r["oos_score"])
    for rank, r in enumerate(rows, 1):
        r["rank"] = rank
    store.replace_table(scores, rows)
    if with_groups:
        store.replace_table(groups, [
            {"group_id": NEW_GROUP, "rank": 1, "size": 2, "keywords": "café, crème, naïve",
             "nearest_intents": "chat_settings (0.31); bill_question (0.22)",
             "examples": "café crème — naïve utterance ünïcode | <img src=x onerror=alert(1)> what's my bill",
             "verdict": "new intent", "ids": json.dumps(GROUPS[NEW_GROUP])},
            {"group_id": PHRASING_GROUP, "rank": 2, "size": 2, "keywords": "voice, deeper",
             "nearest_intents": "chat_settings (0.71)", "examples": "make your voice deeper | what is your name",
             "verdict": "missing phrasing of chat_settings", "ids": json.dumps(GROUPS[PHRASING_GROUP])},
        ])
    else:
        store.replace_table(groups, [])
    store.save_report("out_of_scope", REPORT)
    queue = queue_table()
    store.replace_table(queue, [{**r, **({"predicted_label": None, "oos_group_id": group_of[r["id"]]}
                                         if r["id"] in group_of else {})}
                                for r in store.table_rows(queue)])
    return store
