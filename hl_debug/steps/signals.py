"""The ``signals`` step: every registered signal, on one context, inside one recorded run.

Loads a :class:`~hl_debug.signals.context.SignalContext` from the store once (vectors,
labels, splits, clusters when the analyze step has run, every endpoint's predictions and
the run's kNN graph), runs each signal of :func:`hl_debug.signals.registry.all_signals`,
and writes each one's table (``store.replace_table``) and report (``store.save_report``).
Skipped when none of its inputs changed.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from hl_debug.engines import as_engine
from hl_debug.errors import ConfigError, MissingStepError
from hl_debug.memory import release
from hl_debug.neighbors import KnnMemo
from hl_debug.signals.context import Predictions, SignalContext
from hl_debug.signals.registry import all_signals
from hl_debug.storage import POINTS, Store, hash_json, package_versions
from hl_debug.threads import limit_threads

log = logging.getLogger(__name__)

#: Knobs of the context itself (the signals' own knobs are declared on each signal).
CONTEXT_DEFAULTS: dict[str, Any] = {
    "api_endpoint": None,  # endpoint whose answers are label-issue evidence (see api_endpoint)
}


def defaults() -> dict[str, Any]:
    """Every knob of the step: the context's and each registered signal's, by name."""
    out = dict(CONTEXT_DEFAULTS)
    for cls in all_signals():
        out.update({k: knob.default for k, knob in cls.defaults.items()})
    return out


def api_endpoint(store: Store, name: str | None) -> str | None:
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


def load_context(store: Store, *, encoder: str, api: str | None, knn_memo: KnnMemo | None = None) -> SignalContext:
    """Read one run's :class:`SignalContext` from the store (the kNN graph is computed
    lazily, once, by the first signal that needs it)."""
    ids, X = store.load_embeddings(encoder)
    u = store.utterance_columns(["id", "text", "intent", "usage"])
    pos = {int(i): k for k, i in enumerate(u["id"])}
    rows = [pos[int(i)] for i in ids]  # load_embeddings orders by id too; this keeps them aligned whatever

    def take(values: list, *, numeric: bool = False) -> Any:
        picked = [values[k] for k in rows]
        return np.array([np.nan if v is None else v for v in picked], dtype=float) if numeric else picked

    points = store.table_arrays(POINTS, ("id", "cluster_id"), order="id")  # columns: a dict per row is ~0.6 GB at 1M
    clusters = None
    if len(points["id"]):
        point_ids = points["id"].astype(np.int64)
        cluster = np.array([-1 if c is None else c for c in points["cluster_id"].tolist()], dtype=np.int64)
        at = np.searchsorted(point_ids, ids)
        found = (at < len(point_ids)) & (point_ids[np.minimum(at, len(point_ids) - 1)] == ids)
        clusters = np.where(found, cluster[np.minimum(at, len(point_ids) - 1)], -1)
    predictions = {}
    for e in store.endpoints():
        p = store.prediction_columns(["label", "confidence", "entropy"], endpoint=e["endpoint"], align="id")
        predictions[e["endpoint"]] = Predictions(
            endpoint=e["endpoint"], labels=[v if isinstance(v, str) else None for v in take(p["label"])],
            confidence=take(p["confidence"], numeric=True), entropy=take(p["entropy"], numeric=True))
    active = store.active_endpoint()
    return SignalContext(ids=ids, texts=take(u["text"]), vectors=X, labels=take(u["intent"]),
                         splits=take(u["usage"]), cluster_ids=clusters, predictions=predictions,
                         api_endpoint=api, active_endpoint=active if active in predictions else None,
                         knn_memo=knn_memo)


def signals(store: Store, *, options: dict[str, Any] | None = None, force: bool = False,
            progress: bool = True, knn_memo: KnnMemo | None = None, engine: Any = None,
            ray_address: str | None = None) -> dict[str, Any]:
    """Compute every registered signal and write it to the store; returns counts.

    ``options`` overrides :func:`defaults` (unknown keys are ignored). Skipped
    (``{"skipped": True}``) when the utterances, embeddings, predictions, clusters and
    options are unchanged, unless ``force``. ``engine`` (a name, None: ``HL_ENGINE``, or an
    :class:`~hl_debug.engines.Engine`) is where the out-of-fold folds run
    (:meth:`Engine.parallel <hl_debug.engines.Engine.parallel>`); the results are the same.
    """
    from tqdm.auto import tqdm

    classes = all_signals()
    known = defaults()
    opts = {**known, **{k: v for k, v in (options or {}).items() if k in known}}
    store.require_utterances()
    encoder = store.get_meta("active_encoder")
    if encoder is None:
        raise MissingStepError("the database has no embeddings yet", step="embed")
    endpoints = store.endpoints()
    api_ep = api_endpoint(store, opts["api_endpoint"])
    analyze = store.last_run("analyze")
    instances = [cls(**opts) for cls in classes]
    inputs_hash = hash_json({
        "utterances": store.utterances_hash(), "encoder": encoder,
        "endpoints": [(e["endpoint"], e["n"], e["last"]) for e in endpoints], "api": api_ep,
        "active": store.active_endpoint(), "analyze": analyze["id"] if analyze else None,
        "signals": {s.name: s.get_params() for s in instances},
    })
    if not force and store.is_up_to_date("signals", inputs_hash):
        log.info("signals: inputs unchanged, skipping")
        return {"skipped": True}

    with store.run("signals", parameters=opts, inputs_hash=inputs_hash,
                   versions=package_versions("scikit-learn", "cleanlab", "numpy")) as counts, \
            tqdm(total=len(instances) + 1, desc="signals", unit="signal", disable=not progress) as bar:
        runner = as_engine(engine, address=ray_address)
        if knn_memo is None:  # run on its own: the graph is approximate above HL_APPROX_ABOVE, as in a run
            from hl_debug.models.map_sample import approx_threshold

            knn_memo = KnnMemo(approx_above=approx_threshold())
        context = load_context(store, encoder=encoder, api=api_ep, knn_memo=knn_memo)
        release()  # the load's temporaries (SQLite rows, blobs)
        context.build_graph()  # the one large product (threads help it); read from the memo after analyze
        bar.update()
        for n_done, signal in enumerate(instances, start=1):
            # Signals fit small models (many small BLAS products): with more than one thread
            # those only spin-wait, 10-30x slower on 2 busy cores (hl_debug.threads).
            with limit_threads(1), runner.parallel(n_bytes=context.vectors.nbytes):
                result = signal.find(context)
            context.results[signal.name] = result
            if signal.table is not None and result.columns is not None:
                store.replace_table_columns(signal.table, result.columns)
            elif signal.table is not None:
                store.replace_table(signal.table, result.rows)
            if signal.report_name is not None and result.report is not None:
                store.save_report(signal.report_name, result.report)
            counts.update(result.counts)
            still_read = {name for later in instances[n_done:] for name in later.reads_rows_of}
            for name, done in context.results.items():  # written: only a later reader needs its rows
                if name not in still_read:
                    done.drop_rows()
            release()  # the signal's working memory and the rows just dropped
            bar.update()
        out = {k: v for k, v in counts.items() if not k.startswith("_")}
    out["skipped"] = False
    return out


def summary_lines(store: Store, counts: dict[str, Any]) -> list[str]:
    """The run summary: one line per registered signal (from its counts and stored report)."""
    lines = []
    for cls in all_signals():
        try:
            line = cls().summary(counts, store.report(cls.report_name) if cls.report_name else None)
        except KeyError:  # a signal added since this run: it has no counts yet
            continue
        if line:
            lines.append(line)
    return lines


def signals_step(store: Store, options: dict[str, Any]) -> dict[str, Any]:
    """Pipeline adapter for :func:`signals` (``options`` may hold any :func:`defaults` key)."""
    return signals(store, options=options, force=bool(options.get("force_signals")),
                   progress=options.get("progress", True), knn_memo=options.get("knn_memo"),
                   engine=options.get("engine"), ray_address=options.get("ray_address"))
