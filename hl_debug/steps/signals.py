"""The ``signals`` step: label issues, duplicates/leakage, model report, annotation queue.

Reads embeddings, predictions and (when the analyze step has run) clusters from the
store; computes the signals with the pure functions of this package; writes the
``issues``, ``duplicates`` and ``queue`` tables and the ``model_report`` and
``label_issues`` reports. Skipped when none of its inputs changed.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np

from hl_debug.errors import ConfigError, MissingStepError
from hl_debug.models.neighbors import subset_knn
from hl_debug.storage import Store, hash_json, package_versions
from hl_debug.threads import limit_threads
from hl_debug.scoring.duplicates import duplicate_groups
from hl_debug.scoring.label_issues import LabelIssueDetector, cleanlab_scores, cluster_label_agreement, encode_labels
from hl_debug.scoring.queue import coverage_scores, queue_reason, rank_queue, uncertainty_from_probs
from hl_debug.scoring.report import model_report

log = logging.getLogger(__name__)

ISSUE_COLUMNS = ("id", "text", "given_label", "suggested_label", "score", "flagged", "posterior", "p_given",
                 "p_suggested", "cl_self_confidence", "cl_normalized_margin", "cl_issue", "knn_agreement",
                 "cluster_id", "cluster_purity", "api_label", "api_confidence", "reason")
QUEUE_COLUMNS = ("id", "text", "predicted_label", "score", "reason")

DEFAULTS: dict[str, Any] = {
    "k": 20,                       # neighbours for label agreement and coverage
    "duplicate_threshold": 0.95,   # cosine at/above which two utterances are near-duplicates
    "queue_duplicate_threshold": 0.9,
    "n_synthetic": 2,
    "api_endpoint": None,          # endpoint whose answers are label-issue evidence (see _api_endpoint)
    "random_state": 0,
}


def _api_endpoint(store: Store, name: str | None) -> str | None:
    """The endpoint whose answers are label-issue evidence: ``name`` if given, else the
    real prediction API's recorded answers when imported, else the active endpoint.

    The local model server (the usual active endpoint without an API) was trained on the
    training rows' labels, so on those rows it mostly echoes them; the recorded API answers
    are the brief's "prediction API" and are preferred when present.
    """
    names = [e["endpoint"] for e in store.endpoints()]
    if name is not None:
        if name not in names:
            raise ConfigError(f"no predictions for endpoint {name!r}; the database has: {', '.join(names) or 'none'}")
        return name
    for candidate in (store.get_meta("recorded_endpoint"), store.active_endpoint()):
        if candidate in names:
            return candidate
    return names[0] if names else None


def _cluster_ids(store: Store, ids: np.ndarray) -> np.ndarray | None:
    points = store.rows("points")
    if not points:
        return None
    by_id = {int(p["id"]): int(p["cluster_id"]) if p.get("cluster_id") is not None else -1 for p in points}
    return np.array([by_id.get(int(i), -1) for i in ids], dtype=np.int64)


def _issue_reason(given: str, suggested: str, p_given: float, p_sugg: float, knn_sugg: int, knn_given: int, k: int,
                  api_label: str | None, api_conf: float | None, cluster_share: float | None) -> str:
    parts = [f"classifier: {suggested} {p_sugg:.2f} vs {given} {p_given:.2f}",
             f"neighbours: {knn_sugg}/{k} {suggested}, {knn_given}/{k} {given}"]
    if api_label is not None and api_label != given:
        parts.append(f"API says {api_label} ({api_conf:.2f})")
    elif api_label == given:
        parts.append("API agrees with the label")
    if cluster_share is not None and not np.isnan(cluster_share):
        parts.append(f"{cluster_share:.0%} of its cluster share the label")
    return "; ".join(parts)


def signals(store: Store, *, options: dict[str, Any] | None = None, force: bool = False,
            progress: bool = True) -> dict[str, Any]:
    """Compute every signal and write it to the store; returns counts.

    ``options`` overrides :data:`DEFAULTS`. Skipped (``{"skipped": True}``) when the
    utterances, embeddings, predictions, clusters and options are unchanged, unless
    ``force``.
    """
    from tqdm.auto import tqdm

    opts = {**DEFAULTS, **{k: v for k, v in (options or {}).items() if k in DEFAULTS}}
    store.require_utterances()
    encoder = store.get_meta("active_encoder")
    if encoder is None:
        raise MissingStepError("the database has no embeddings yet", step="embed")
    endpoints = store.endpoints()
    api_ep = _api_endpoint(store, opts["api_endpoint"])
    analyze = store.last_run("analyze")
    inputs_hash = hash_json({
        "utterances": store.utterances_hash(), "encoder": encoder,
        "endpoints": [(e["endpoint"], e["n"], e["last"]) for e in endpoints], "api": api_ep,
        "analyze": analyze["id"] if analyze else None, "options": opts,
    })
    if not force and store.is_up_to_date("signals", inputs_hash):
        log.info("signals: inputs unchanged, skipping")
        return {"skipped": True}

    with store.run("signals", parameters=opts, inputs_hash=inputs_hash,
                   versions=package_versions("scikit-learn", "cleanlab", "numpy")) as counts, \
            tqdm(total=5, desc="signals", unit="step", disable=not progress) as bar:
        ids, X = store.load_embeddings(encoder)
        df = store.utterances_df().set_index("id").loc[ids]
        texts = df["text"].tolist()
        intents = [v if isinstance(v, str) else None for v in df["intent"]]
        usages = [v if isinstance(v, str) else None for v in df["usage"]]
        annotated = np.array([v is not None for v in intents])
        classes = sorted({v for v in intents if v is not None})
        clusters = _cluster_ids(store, ids)
        api = store.predictions_df(api_ep).set_index("id").loc[ids] if api_ep else None

        # 1. label issues on the annotated rows (intents with a single row cannot be scored out of fold).
        y_all = encode_labels(intents, classes)
        class_counts = np.bincount(y_all[annotated], minlength=len(classes))
        scorable = annotated & np.isin(y_all, np.flatnonzero(class_counts >= 2))
        rows_idx = np.flatnonzero(scorable)
        issues: list[dict[str, Any]] = []
        det = None
        if len(rows_idx) and len(set(y_all[rows_idx])) >= 2:
            y = y_all[rows_idx]
            api_labels = api_conf = None
            if api is not None:
                api_labels = encode_labels([v if isinstance(v, str) else None for v in api["label"].iloc[rows_idx]],
                                           classes)
                api_conf = api["confidence"].iloc[rows_idx].to_numpy(dtype=float)
            det = LabelIssueDetector(k=opts["k"], n_synthetic=opts["n_synthetic"], random_state=opts["random_state"])
            # neighbours among the annotated rows, read off the pipeline's shared kNN
            nbrs = subset_knn(X, rows_idx, min(opts["k"], len(rows_idx) - 1))
            det.fit(X[rows_idx], y, n_classes=len(classes), neighbors=nbrs,
                    cluster_ids=clusters[rows_idx] if clusters is not None else None,
                    api_labels=api_labels, api_confidence=api_conf)
            r = np.arange(len(y))
            purity = (cluster_label_agreement(y, clusters[rows_idx], n_classes=len(classes))
                      if clusters is not None else np.full(len(y), np.nan))
            nm = cleanlab_scores(y, det.pred_probs_, method="normalized_margin")
            k_eff = min(opts["k"], len(y) - 1)
            for j, i in enumerate(rows_idx):
                given, sugg = classes[y[j]], classes[det.suggested_[j]]
                a_lab = api_labels is not None and api_labels[j] >= 0 and classes[api_labels[j]] or None
                a_conf = float(api_conf[j]) if a_lab else None
                issues.append({
                    "id": int(ids[i]), "score": float(det.scores_[j]), "given_label": given, "suggested_label": sugg,
                    "flagged": int(det.flagged_[j]), "posterior": float(det.posterior_[j]),
                    "p_given": float(det.distribution_[j, y[j]]),
                    "p_suggested": float(det.distribution_[j, det.suggested_[j]]),
                    "cl_self_confidence": float(det.pred_probs_[j, y[j]]), "cl_normalized_margin": float(nm[j]),
                    "cl_issue": int(det.cleanlab_issues_[j]), "knn_agreement": float(det.knn_probs_[j, y[j]]),
                    "cluster_id": int(clusters[i]) if clusters is not None else None,
                    "cluster_purity": None if np.isnan(purity[j]) else float(purity[j]),
                    "api_label": a_lab, "api_confidence": a_conf,
                    "reason": _issue_reason(given, sugg, float(det.pred_probs_[j, y[j]]),
                                            float(det.pred_probs_[j, det.suggested_[j]]),
                                            int(round(det.knn_probs_[j, det.suggested_[j]] * k_eff)),
                                            int(round(det.knn_probs_[j, y[j]] * k_eff)), k_eff,
                                            a_lab, a_conf, purity[j]),
                })
            issues.sort(key=lambda row: -row["score"])
            for rank, row in enumerate(issues, 1):
                row["rank"] = rank
        store.replace_rows("issues", issues, columns={"id": int, "rank": int, "score": float, "given_label": str,
                                                      "suggested_label": str, "flagged": int, "reason": str})
        counts["n_issues_scored"] = len(issues)
        counts["n_flagged"] = int(det.flagged_.sum()) if det is not None else 0
        bar.update()

        # 2. near-duplicates: conflicting labels and split leakage.
        groups = duplicate_groups(X, labels=intents, usages=usages, threshold=opts["duplicate_threshold"])
        dup_rows = [{"group_id": g, "id": int(ids[m]), "kind": grp["kind"], "similarity": s,
                     "intent": intents[m], "usage": usages[m]}
                    for g, grp in enumerate(groups, 1) for m, s in zip(grp["members"], grp["similarity"])]
        store.replace_rows("duplicates", dup_rows, columns={"group_id": int, "id": int, "kind": str, "similarity": float})
        counts["n_conflicting_groups"] = sum(g["kind"] == "conflicting_labels" for g in groups)
        counts["n_leakage_groups"] = sum(g["kind"] == "split_leakage" for g in groups)
        bar.update()

        # 3. annotation queue over the unannotated rows.
        queue_rows: list[dict[str, Any]] = []
        cand = np.flatnonzero(~annotated)
        if len(cand) and det is not None:
            from sklearn.base import clone

            from hl_debug.scoring.label_issues import default_classifier

            with limit_threads(1):  # see hl_debug.threads
                clf = clone(default_classifier()).fit(X[rows_idx], y_all[rows_idx])
            # The predicted label shown is the active endpoint's (the model being debugged).
            active_ep = store.active_endpoint()
            active = (store.predictions_df(active_ep).set_index("id").loc[ids]
                      if active_ep in {e["endpoint"] for e in endpoints} else None)
            probs = np.zeros((len(cand), len(classes)))
            probs[:, clf.classes_] = clf.predict_proba(X[cand])
            unc = uncertainty_from_probs(probs, method="entropy")
            cov_all, knn_lab = coverage_scores(X, annotated, k=opts["k"], cluster_ids=clusters)
            ranked = rank_queue(X[cand], uncertainty=np.clip(unc, 0, 1), coverage=cov_all[cand],
                                cluster_ids=clusters[cand] if clusters is not None else None,
                                duplicate_threshold=opts["queue_duplicate_threshold"])
            share = {}
            if clusters is not None:
                for c in np.unique(clusters):
                    share[int(c)] = float(annotated[clusters == c].mean())
            k_eff = min(opts["k"], len(ids) - 1)
            for rank, (pos, score, dup) in enumerate(zip(ranked["order"], ranked["score"], ranked["duplicate_of"]), 1):
                i = cand[pos]
                ranked_classes = [classes[c] for c in np.argsort(-probs[pos])]
                ep_label = active["label"].iloc[i] if active is not None else None
                predicted = ep_label if isinstance(ep_label, str) else ranked_classes[0]
                cl = int(clusters[i]) if clusters is not None else None
                queue_rows.append({
                    "id": int(ids[i]), "rank": rank, "score": float(score), "predicted_label": predicted,
                    "uncertainty": float(unc[pos]), "coverage": float(cov_all[i]), "cluster_id": cl,
                    "near_duplicate_of": int(ids[cand[dup]]) if dup >= 0 else None,
                    "reason": queue_reason(predicted=predicted, uncertainty=float(unc[pos]),
                                           runner_up=next(c for c in ranked_classes if c != predicted),
                                           knn_labeled=int(knn_lab[i]), k=k_eff, cluster_id=cl,
                                           cluster_labeled_share=share.get(cl) if cl is not None else None,
                                           duplicate_of_text=texts[cand[dup]] if dup >= 0 else None),
                })
        store.replace_rows("queue", queue_rows, columns={"id": int, "rank": int, "score": float,
                                                         "predicted_label": str, "reason": str})
        counts["n_queue"] = len(queue_rows)
        bar.update()

        # 4. model report per endpoint.
        reports = []
        for e in endpoints:
            p = store.predictions_df(e["endpoint"]).set_index("id").loc[ids]
            reports.append(model_report(ids=ids, texts=texts, given=intents, usage=usages,
                                        predicted=p["label"].tolist(), confidence=p["confidence"].to_numpy(float),
                                        entropy=p["entropy"].to_numpy(float), endpoint=e["endpoint"]))
        store.save_report("model_report", {"active_endpoint": store.active_endpoint(), "endpoints": reports},
                          run_id=None)
        counts["n_endpoints_reported"] = len(reports)
        bar.update()

        # 5. the label-issue summary.
        summary = {
            "n_scored": len(issues), "api_endpoint": api_ep, "uses_clusters": clusters is not None,
            "n_flagged": counts["n_flagged"],
            "estimated_precision": det.estimated_precision_ if det is not None else None,
            "estimated_error_rate": det.noise_rate_ if det is not None else None,
            "n_cleanlab_issues": int(det.cleanlab_issues_.sum()) if det is not None else 0,
            "not_scored_single_row_intents": [classes[c] for c in np.flatnonzero(class_counts == 1)],
        }
        store.save_report("label_issues", json.loads(json.dumps(summary, default=float)))
        bar.update()
        result = {k: v for k, v in counts.items() if not k.startswith("_")}
    result["skipped"] = False
    return result


def signals_step(store: Store, options: dict[str, Any]) -> dict[str, Any]:
    """Pipeline adapter for :func:`signals` (``options`` may hold any :data:`DEFAULTS` key)."""
    return signals(store, options=options, force=bool(options.get("force_signals")),
                   progress=options.get("progress", True))
