"""A synthetic store for the web app's tests: the tiny export plus plausible rows in every
table the later pipeline steps write (points, clusters, neighbors, predictions, issues,
queue, duplicates, the model report), so pages and the API can be tested without UMAP,
HDBSCAN or a model.

The tiny export has three intents; id 1018 ("i want to rename you to jarvis") is labelled
``bill_question`` but sits among ``chat_settings`` rows: the planted label error. Ids
1019-1023 are unannotated; 1022's text is an ``<img onerror>`` injection.
"""

from __future__ import annotations

import json
import math

import numpy as np

from hl_debug.signals.registry import get_signal
from hl_debug.steps.ingest import ingest
from hl_debug.storage import CLUSTERS, NEIGHBORS, POINTS, Store

ENDPOINT = "local:test-model"
CLUSTER_OF = {**{i: 0 for i in range(1000, 1006)}, 1019: 0,
              **{i: 1 for i in range(1006, 1012)}, 1020: 1, 1022: 1,
              **{i: 2 for i in range(1012, 1019)}, 1021: 2,
              1023: -1}
CENTRES = {0: (-5.0, 0.0), 1: (5.0, 0.0), 2: (0.0, 6.0), -1: (0.0, -6.0)}
XSS_ID = 1022
PLANTED_ERROR_ID = 1018


def _label_of(row: dict) -> str:
    """The 'true' intent of a tiny-export row, from the cluster it belongs to."""
    return {0: "card_issue", 1: "bill_question", 2: "chat_settings", -1: "chat_settings"}[CLUSTER_OF[row["id"]]]


def fill_synthetic(store: Store, export_path, *, with_analysis: bool = True) -> Store:
    """Ingest ``export_path`` (the tiny export) and write every derived table.

    With ``with_analysis=False`` only the export is loaded (to test pages before any step ran).
    """
    ingest(store, export_path)
    if not with_analysis:
        return store
    rows = store.utterance_rows()
    intents = store.intents()
    rng = np.random.default_rng(0)
    points, preds = [], []
    for k, r in enumerate(rows):
        cx, cy = CENTRES[CLUSTER_OF[r["id"]]]
        points.append({"id": r["id"], "x": cx + float(rng.normal(0, 0.8)), "y": cy + float(rng.normal(0, 0.8)),
                       "cluster_id": CLUSTER_OF[r["id"]], "outlier_score": round(float(rng.uniform(0, 1)), 3)})
        true = _label_of(r)
        if r["id"] == 1010:  # a row the model got wrong, so the confusion matrix has an off-diagonal cell
            true = "card_issue"
        conf = 0.55 + 0.4 * ((k * 37) % 10) / 10
        others = [i for i in intents if i != true]
        rest = (1 - conf) / len(others)
        dist = [[true, conf]] + [[o, rest] for o in others]
        ent = -sum(p * math.log(p) for _, p in dist)
        label = None if r["id"] == 1023 else true  # one row the API did not answer
        preds.append({"text_hash": r["text_hash"], "label": label, "confidence": conf if label else None,
                      "distribution": dist if label else [], "entropy": ent if label else None,
                      "margin": conf - rest if label else None})
    store.replace_table(POINTS, points)
    store.save_predictions(ENDPOINT, preds)
    store.set_meta("active_endpoint", ENDPOINT)

    by_cluster: dict[int, list[dict]] = {}
    for r in rows:
        by_cluster.setdefault(CLUSTER_OF[r["id"]], []).append(r)
    clusters = []
    for cid, members in sorted(by_cluster.items()):
        if cid < 0:
            continue
        counts: dict[str, int] = {}
        usage: dict[str, int] = {}
        for m in members:
            if m["intent"]:
                counts[m["intent"]] = counts.get(m["intent"], 0) + 1
            usage[m["usage"] or "none"] = usage.get(m["usage"] or "none", 0) + 1
        n_ann = sum(counts.values())
        major = max(counts, key=counts.get)
        purity = counts[major] / n_ann
        ent = -sum(c / n_ann * math.log(c / n_ann) for c in counts.values())
        xs = [p["x"] for p in points if p["cluster_id"] == cid]
        ys = [p["y"] for p in points if p["cluster_id"] == cid]
        clusters.append({"cluster_id": cid, "size": len(members), "n_annotated": n_ann,
                         "n_unannotated": len(members) - n_ann, "majority_intent": major, "purity": purity,
                         "label_entropy": ent, "unannotated_share": (len(members) - n_ann) / len(members),
                         "label_counts": json.dumps(counts), "usage_counts": json.dumps(usage),
                         "keywords": {0: "card, stolen, atm", 1: "bill, pay, owe", 2: "voice, name, speak"}[cid],
                         "x": sum(xs) / len(xs), "y": sum(ys) / len(ys)})
    impure = sorted((c for c in clusters if c["purity"] < 1), key=lambda c: (c["purity"], -c["size"]))
    for c in clusters:  # as the analyze step does: pure clusters are not ranked
        c["impurity_rank"] = impure.index(c) + 1 if c in impure else None
    for rank, c in enumerate(sorted(clusters, key=lambda c: -c["unannotated_share"]), 1):
        c["unannotated_rank"] = rank
    store.replace_table(CLUSTERS, clusters)

    neighbors = []
    for r in rows:
        same = [m for m in by_cluster[CLUSTER_OF[r["id"]]] if m["id"] != r["id"]] or [m for m in rows if m["id"] != r["id"]]
        for rank, m in enumerate(same[:5], 1):
            neighbors.append({"id": r["id"], "rank": rank, "neighbor_id": m["id"], "similarity": round(0.9 - 0.05 * rank, 3)})
    store.replace_table(NEIGHBORS, neighbors)

    issues = []
    for r in rows:
        if not r["intent"]:
            continue
        true = _label_of(r)
        planted = r["id"] == PLANTED_ERROR_ID
        score = 0.95 if planted else round(0.05 + (r["id"] % 7) / 20, 3)
        issues.append({"id": r["id"], "score": score, "given_label": r["intent"],
                       "suggested_label": true if planted else r["intent"], "flagged": int(planted),
                       "p_given": 0.04 if planted else 0.9, "knn_agreement": 0.0 if planted else 1.0,
                       "cluster_purity": 6 / 7 if CLUSTER_OF[r["id"]] == 2 else 1.0,
                       "reason": "neighbours and the model say chat_settings" if planted else "consistent"})
    issues.sort(key=lambda i: -i["score"])
    for rank, i in enumerate(issues, 1):
        i["rank"] = rank
    store.replace_table(get_signal("issues").table, issues)

    queue = []
    for rank, r in enumerate([r for r in rows if not r["intent"]], 1):
        queue.append({"id": r["id"], "rank": rank, "score": round(1 - rank / 10, 3),
                      "predicted_label": _label_of(r), "reason": "uncertain; few labels nearby"})
    store.replace_table(get_signal("queue").table, queue)
    store.save_report("label_issues", {"n_scored": len(issues), "n_flagged": 1, "estimated_precision": 0.9})
    store.replace_table(get_signal("duplicates").table, [
        {"group_id": 1, "id": 1006, "kind": "split_leakage", "similarity": 0.93},
        {"group_id": 1, "id": 1009, "kind": "split_leakage", "similarity": 0.93},
    ])
    store_model_report(store)
    return store


def store_model_report(store: Store) -> None:
    """Store the model report of every endpoint, as the signals step does (its ``report``
    signal on a context without vectors: the report needs none)."""
    from hl_debug.signals.context import Predictions, SignalContext
    from hl_debug.signals.registry import get_signal

    u = store.utterance_columns(["id", "text", "intent", "usage"])
    preds = {}
    for e in store.endpoints():
        p = store.prediction_columns(["label", "confidence", "entropy"], endpoint=e["endpoint"], align="id")
        preds[e["endpoint"]] = Predictions(e["endpoint"], p["label"], np.array(p["confidence"], dtype=float),
                                           np.array(p["entropy"], dtype=float))
    context = SignalContext(ids=np.array(u["id"]), texts=u["text"], vectors=np.zeros((len(u["id"]), 0)),
                            labels=u["intent"], splits=u["usage"], predictions=preds,
                            active_endpoint=store.active_endpoint())
    signal = get_signal("report")()
    store.save_report(signal.report_name, signal.find(context).report)
