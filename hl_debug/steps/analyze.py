"""The ``analyze`` step: the 2-D map, HDBSCAN clusters, neighbours and cluster rankings.

It reads the active encoder's embeddings, fits a :class:`~hl_debug.models.map.MapAnalyzer`
(arrays in, arrays out) and writes the declared tables ``points``, ``neighbors`` and
``clusters`` (:mod:`hl_debug.storage.schema`) plus the ``analysis`` report (impure-cluster
ranking with suspect rows, unannotated-region ranking). It is skipped when embeddings,
labels and parameters are unchanged; when only labels changed the map and clusters are kept
and only the cluster statistics are recomputed - unless the clusters depend on the labels
(``max_cluster_labels`` set, the default: clusters mixing more intents are cut down HDBSCAN's
hierarchy), then everything is recomputed.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import numpy as np

from hl_debug.errors import AnalysisError, ConfigError, MissingStepError
from hl_debug.models.map import SELECTION_METHODS, MapAnalyzer
from hl_debug.neighbors import KnnMemo, knn_graph
from hl_debug.scoring import clusters as cl
from hl_debug.settings import default
from hl_debug.storage import CLUSTERS, NEIGHBORS, POINTS, Store, hash_json, package_versions

log = logging.getLogger(__name__)

ANALYZER_PARAMS = ("n_neighbors", "n_components", "map_min_dist", "cluster_min_dist", "random_state", "n_epochs",
                   "min_cluster_size", "min_samples", "cluster_selection_method", "cluster_selection_epsilon",
                   "max_cluster_labels")
# CLI flag of each parameter, so errors name what the user typed.
FLAGS = {"n_neighbors": "--n-neighbors", "n_components": "--dims", "map_min_dist": "--map-min-dist",
         "cluster_min_dist": "--cluster-min-dist", "random_state": "--seed", "n_epochs": "--epochs",
         "min_cluster_size": "--min-cluster-size", "min_samples": "--min-samples",
         "cluster_selection_method": "--cluster-selection", "cluster_selection_epsilon": "--cluster-epsilon",
         "max_cluster_labels": "--max-cluster-labels",
         "k_neighbors": "--k-neighbors",
         "min_annotated": "--min-annotated", "top_keywords": "--keywords"}


def _check_options(params: dict[str, Any], k_neighbors: int, min_annotated: int, top_keywords: int) -> None:
    checks = {
        "n_neighbors": params["n_neighbors"] >= 2, "n_components": params["n_components"] >= 2,
        "map_min_dist": 0 <= params["map_min_dist"] <= 1, "cluster_min_dist": 0 <= params["cluster_min_dist"] <= 1,
        "n_epochs": params["n_epochs"] is None or params["n_epochs"] >= 1,
        "min_cluster_size": params["min_cluster_size"] is None or params["min_cluster_size"] >= 2,
        "min_samples": params["min_samples"] is None or params["min_samples"] >= 1,
        "cluster_selection_method": params["cluster_selection_method"] in SELECTION_METHODS,
        "cluster_selection_epsilon": (params["cluster_selection_epsilon"] is None
                                      or 0 <= params["cluster_selection_epsilon"] < math.inf),
        "max_cluster_labels": params["max_cluster_labels"] is None or params["max_cluster_labels"] >= 1,
        "k_neighbors": k_neighbors >= 1, "min_annotated": min_annotated >= 1, "top_keywords": top_keywords >= 1,
    }
    values = {**params, "k_neighbors": k_neighbors, "min_annotated": min_annotated, "top_keywords": top_keywords}
    bad = [f"{FLAGS[name]}={values[name]!r}" for name, ok in checks.items() if not ok]
    if bad:
        raise ConfigError(f"invalid analyze option(s): {', '.join(bad)}",
                          hint="n-neighbors/dims/min-cluster-size >= 2, min-samples/k-neighbors/epochs/max-cluster-labels >= 1, "
                               "min-dist in [0, 1], cluster-epsilon >= 0, cluster-selection eom or leaf; see `hl-debug analyze --help`.")


def analyze(store: Store, analyzer: MapAnalyzer | None = None, *, k_neighbors: int = default("k_neighbors"),
            min_annotated: int = default("min_annotated"),
            top_keywords: int = 5, impurity_method: str = "wilson", region_method: str = "wilson",
            force: bool = default("force"), progress: bool = True, knn_memo: KnnMemo | None = None) -> dict[str, Any]:
    """Map, cluster and describe every utterance; write points, neighbors, clusters, report.

    Parameters
    ----------
    store : Store
        Must hold utterances and the active encoder's embeddings (``hl-debug embed``).
    analyzer : MapAnalyzer, optional
        Configured estimator (default ``MapAnalyzer()``); its parameters are recorded.
    k_neighbors : int
        Nearest neighbours per utterance written to ``neighbors``.
    min_annotated : int
        Clusters with fewer annotated rows are not ranked for impurity.
    top_keywords : int
        Class-based TF-IDF keywords per cluster.
    impurity_method, region_method : str
        Ranking scores, see :func:`hl_debug.scoring.clusters.rank_impure_clusters` and
        :func:`~hl_debug.scoring.clusters.rank_unannotated_regions`.
    force : bool
        Recompute even when the inputs are unchanged.

    Returns
    -------
    dict
        Counts: ``n_points, n_clusters, n_noise, noise_share, n_impure, n_regions,
        reprojected, skipped``.
    """
    from tqdm.auto import tqdm

    analyzer = analyzer if analyzer is not None else MapAnalyzer()
    params = {name: getattr(analyzer, name) for name in ANALYZER_PARAMS}
    params.update(analyzer.approx_params(store.count_utterances()))  # {} below the size threshold
    _check_options(params, k_neighbors, min_annotated, top_keywords)
    for method, valid, flag in ((impurity_method, cl.IMPURITY_METHODS, "impurity_method"),
                                (region_method, cl.REGION_METHODS, "region_method")):
        if method not in valid:
            raise ConfigError(f"unknown {flag} {method!r}; valid: {', '.join(valid)}")
    store.require_utterances()
    encoder = store.get_meta("active_encoder")
    if encoder is None:
        raise MissingStepError("the database has no embeddings yet", step="embed")
    custom = [name for name in ("map_model", "reduce_model", "cluster_model") if getattr(analyzer, name) is not None]
    all_params = {**params, "custom_models": custom, "encoder": encoder, "k_neighbors": k_neighbors,
                  "min_annotated": min_annotated, "top_keywords": top_keywords,
                  "impurity_method": impurity_method, "region_method": region_method}
    # The map depends on the vectors (encoder + texts) and its parameters; the statistics
    # also on the labels and splits; the clusters on the labels too where mixed clusters are
    # cut (max_cluster_labels), so there a label change re-clusters.
    label_keys = ("id", "text_hash", "intent") if _clusters_use_labels(analyzer) else ()
    projection_hash = hash_json([encoder, store.utterances_hash(("id", "text_hash")), params, custom, k_neighbors]
                                + ([store.utterances_hash(label_keys)] if label_keys else []))
    inputs_hash = hash_json([projection_hash, store.utterances_hash(("id", "text_hash", "intent", "usage")), all_params])
    has_points = bool(store.table_rows(POINTS, limit=1))
    if not force and not custom and has_points and store.is_up_to_date("analyze", inputs_hash):
        last = store.last_run("analyze") or {}
        return {**last.get("counts", {}), "skipped": True}
    reuse_map = (not force and not custom and has_points
                 and store.get_meta("analyze_projection_hash") == projection_hash)

    stages = ["load"] + (["stats", "write"] if reuse_map else ["knn", "umap + hdbscan", "stats", "write"])
    bar = tqdm(total=len(stages), desc="analyze", unit="stage", disable=not progress)

    def stage(name: str) -> None:
        bar.set_postfix_str(name)
        bar.update(1)

    with bar, store.run("analyze", parameters=all_params, inputs_hash=inputs_hash,
                        versions=package_versions("umap-learn", "hdbscan", "scikit-learn", "numpy")) as counts:
        ids, X = store.load_embeddings(encoder)
        rows = {r["id"]: r for r in store.utterance_rows(("id", "text", "intent", "usage"))}
        texts = [rows[i]["text"] for i in ids]
        intents = [rows[i]["intent"] for i in ids]
        usages = [rows[i]["usage"] for i in ids]
        stage("load")
        if len(ids) < 5:
            raise AnalysisError(f"the database holds {len(ids)} utterance(s); a map needs at least 5")
        ids_arr = np.asarray(ids, dtype=np.int64)
        if reuse_map:
            log.info("embeddings unchanged: keeping the map and clusters, recomputing cluster statistics")
            points = {r["id"]: r for r in store.table_rows(POINTS)}
            xy = np.array([[points[i]["x"], points[i]["y"]] for i in ids])
            labels = np.array([points[i]["cluster_id"] for i in ids], dtype=np.int64)
            nearest = np.array([points[i]["nearest_cluster"] for i in ids], dtype=np.int64)
            nb = store.table_arrays(NEIGHBORS, ("id", "rank", "neighbor_id"), order="id")
            k_eff = int(nb["rank"].max()) if len(nb["rank"]) else 0
            nb_idx = np.zeros((len(ids), k_eff), dtype=np.int64)
            if k_eff:
                order = np.argsort(ids_arr, kind="stable")
                where = lambda v: order[np.searchsorted(ids_arr, v, sorter=order)]  # noqa: E731 - id -> position
                nb_idx[where(nb["id"]), nb["rank"].astype(np.int64) - 1] = where(nb["neighbor_id"])
        else:
            k_graph = min(max(analyzer.n_neighbors, k_neighbors + 1), len(ids))
            knn = knn_graph(X, k_graph, metric=analyzer.metric,
                            memo=knn_memo if knn_memo is not None else KnnMemo(approx_above=analyzer.approx_threshold()))
            stage("knn")
            try:
                analyzer.fit(X, intents, knn=knn)
            except ValueError as exc:
                raise AnalysisError(f"could not build the map: {exc}") from exc
            stage("umap + hdbscan")
            xy, labels, nearest = analyzer.embedding_, analyzer.labels_, analyzer.nearest_cluster_
            k_eff = min(k_neighbors, k_graph - 1)
            nb_idx = knn[0][:, 1:k_eff + 1]
            point_columns = {
                "id": ids_arr, "x": np.asarray(xy[:, 0], dtype=np.float64), "y": np.asarray(xy[:, 1], dtype=np.float64),
                "cluster_id": np.asarray(labels, dtype=np.int64), "nearest_cluster": np.asarray(nearest, dtype=np.int64),
                "membership": _finite(analyzer.probabilities_), "outlier_score": _finite(analyzer.outlier_scores_)}
            # columns, not a dict per row: 10 rows per utterance (10M at a million utterances)
            neighbor_columns = {
                "id": np.repeat(ids_arr, k_eff), "rank": np.tile(np.arange(1, k_eff + 1), len(ids)),
                "neighbor_id": ids_arr[nb_idx].reshape(-1),
                "similarity": (1.0 - knn[1][:, 1:k_eff + 1]).astype(np.float64).reshape(-1)}

        stats = cl.cluster_stats(labels, intents, usages, points_2d=xy)
        keywords = cl.cluster_keywords(texts, labels, top_n=top_keywords)
        agreement = cl.neighbor_label_agreement(nb_idx, intents) if k_eff else None
        impure = cl.rank_impure_clusters(stats, labels, intents, ids, method=impurity_method,
                                         min_annotated=min_annotated, neighbor_agreement=agreement,
                                         nearest_cluster=nearest)
        regions = cl.rank_unannotated_regions(labels, intents, ids, nearest_cluster=nearest, method=region_method)
        stage("stats")

        impurity_rank = {r["cluster_id"]: r["rank"] for r in impure}
        impurity_score = {r["cluster_id"]: r["impurity_score"] for r in impure}
        cluster_regions = [r for r in regions if r["cluster_id"] != cl.NOISE]
        unannotated_rank = {r["cluster_id"]: rank for rank, r in enumerate(cluster_regions, start=1)}
        cluster_rows = [
            {**s, "label_counts": _json(s["label_counts"]), "usage_counts": _json(s["usage_counts"]),
             "keywords": ", ".join(keywords.get(s["cluster_id"], [])),
             "impurity_score": impurity_score.get(s["cluster_id"]),
             "impurity_rank": impurity_rank.get(s["cluster_id"]),
             "unannotated_rank": unannotated_rank.get(s["cluster_id"])}
            for s in stats
        ]
        with store.transaction():
            if not reuse_map:
                store.replace_table_columns(POINTS, point_columns)
                store.replace_table_columns(NEIGHBORS, neighbor_columns)
            store.replace_table(CLUSTERS, cluster_rows)
            if not reuse_map:
                store.set_meta("analyze_projection_hash", projection_hash)
        n_noise = int((labels == cl.NOISE).sum())
        for r in impure:
            for s in r["suspects"]:
                s["text"] = rows[s["id"]]["text"]
        previous = store.report("analysis") or {}
        store.save_report("analysis", {
            "encoder": encoder, "parameters": all_params,
            # the HDBSCAN values actually used (scaled defaults resolved)
            "min_cluster_size": previous.get("min_cluster_size") if reuse_map else analyzer.min_cluster_size_,
            "min_samples": previous.get("min_samples") if reuse_map else analyzer.min_samples_,
            "cluster_selection_epsilon": (previous.get("cluster_selection_epsilon") if reuse_map
                                          else analyzer.cluster_selection_epsilon_),
            "n_split_clusters": previous.get("n_split_clusters", 0) if reuse_map else analyzer.n_split_,
            "cut_clusters": previous.get("cut_clusters", {}) if reuse_map else analyzer.cut_,
            "suspect_max_agreement": cl.SUSPECT_MAX_AGREEMENT,
            "n_likely_errors": sum(r["n_likely_errors"] for r in impure),
            "n_points": len(ids), "n_clusters": len(stats), "n_noise": n_noise, "noise_share": n_noise / len(ids),
            "keywords": {str(c): kw for c, kw in keywords.items()},
            "impure_clusters": impure, "unannotated_regions": regions,
        }, run_id=counts.get("_run_id"))
        stage("write")
        counts.update({"n_points": len(ids), "n_clusters": len(stats), "n_noise": n_noise,
                       "noise_share": round(n_noise / len(ids), 4), "n_impure": len(impure),
                       "n_regions": len(regions), "reprojected": not reuse_map})
    log.info("analyze: %d points, %d clusters, %.1f%% noise", len(ids), len(stats), 100 * n_noise / len(ids))
    return {**counts, "skipped": False}


def _clusters_use_labels(analyzer: MapAnalyzer) -> bool:
    """Whether the labels can change the clusters (:attr:`MapAnalyzer.max_cluster_labels`
    cuts mixed clusters of the default HDBSCAN, at any epsilon)."""
    return analyzer.max_cluster_labels is not None and analyzer.cluster_model is None


def _finite(values: Any) -> np.ndarray:
    """float64 values with every non-finite one as NaN (stored as NULL)."""
    out = np.asarray(values, dtype=np.float64).copy()
    out[~np.isfinite(out)] = np.nan
    return out


def _json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=False)


def analyzer_from_options(options: dict[str, Any]) -> MapAnalyzer:
    """A :class:`MapAnalyzer` from pipeline/CLI options (unknown keys ignored)."""
    kwargs = {name: options[name] for name in ANALYZER_PARAMS if options.get(name) is not None}
    for name in ("map_model", "reduce_model", "cluster_model"):
        if options.get(name) is not None:
            kwargs[name] = options[name]
    return MapAnalyzer(**kwargs)


def analyze_step(store: Store, options: dict[str, Any]) -> dict[str, Any]:
    """Pipeline adapter: ``options`` may hold :class:`MapAnalyzer` parameters, ``k_neighbors``,
    ``min_annotated``, ``top_keywords``, ``force`` and ``progress``."""
    analyzer = options.get("analyzer") or analyzer_from_options(options)
    keys = ("k_neighbors", "min_annotated", "top_keywords", "impurity_method", "region_method", "force", "progress",
            "knn_memo")
    return analyze(store, analyzer, **{k: options[k] for k in keys if options.get(k) is not None})
