"""Out-of-scope rows for the web app's tests, on top of :func:`tests.webapp_fixtures.fill_synthetic`.

The rows go into the tables the ``oos`` and ``new_intents`` signals
(``hl_debug/signals/out_of_scope.py``) declare, which the ``/discover`` page, the map's colour
and the queue read.

The synthetic candidates: group 1 ("new intent") holds the unannotated 1023 (unicode) and
1022 (the ``<img onerror>`` injection); group 2 ("missing phrasing of chat_settings") holds
the unannotated 1021 and the annotated 1016.
"""

from __future__ import annotations

import json

from hl_debug.signals.registry import get_signal
from hl_debug.storage import Store

OOS = get_signal("oos").table
NEW_INTENTS = get_signal("new_intents").table
QUEUE = get_signal("queue").table
GROUPS = {1: [1023, 1022], 2: [1021, 1016]}
NEW_GROUP, PHRASING_GROUP = 1, 2
REPORT = {"target_fpr": 0.05, "threshold": 0.62, "n_candidates": 4, "n_candidates_unannotated": 3,
          "n_unannotated": 5, "estimated_share": 0.4, "estimated_share_low": 0.12, "estimated_share_high": 0.77,
          "n_groups": 2}


def fill_oos(store: Store, *, with_groups: bool = True) -> Store:
    """Write the ``oos`` rows (every utterance), the groups and the report into a store
    :func:`fill_synthetic` filled; the queue's candidates lose their pre-selected label and
    carry their group, as the queue signal does when the out-of-scope signal ran."""
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
    store.replace_table(OOS, rows)
    if with_groups:
        store.replace_table(NEW_INTENTS, [
            {"group_id": NEW_GROUP, "rank": 1, "size": 2, "keywords": "café, crème, naïve",
             "nearest_intents": "chat_settings (0.31); bill_question (0.22)",
             "examples": "café crème — naïve utterance ünïcode | <img src=x onerror=alert(1)> what's my bill",
             "verdict": "new intent", "ids": json.dumps(GROUPS[NEW_GROUP])},
            {"group_id": PHRASING_GROUP, "rank": 2, "size": 2, "keywords": "voice, deeper",
             "nearest_intents": "chat_settings (0.71)", "examples": "make your voice deeper | what is your name",
             "verdict": "missing phrasing of chat_settings", "ids": json.dumps(GROUPS[PHRASING_GROUP])},
        ])
    else:
        store.replace_table(NEW_INTENTS, [])
    store.save_report("out_of_scope", REPORT)
    store.replace_table(QUEUE, [{**r, **({"predicted_label": None, "oos_group_id": group_of[r["id"]]}
                                         if r["id"] in group_of else {})}
                                for r in store.table_rows(QUEUE)])
    return store
