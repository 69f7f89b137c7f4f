"""The engines: the same embedding, scoring and end-to-end results in this process and on Ray.

One local Ray (2 CPUs, no dashboard) serves the whole module: starting it is the slow part.
"""

from __future__ import annotations

import numpy as np
import pytest

from hl_debug.engines import LocalEngine, get_engine
from hl_debug.errors import ConfigError
from hl_debug.signals.registry import get_signal
from hl_debug.storage import CLUSTERS, POINTS, Store
from tests.fakes import FakeEncoder

TEXTS = [f"{w} my card {i % 7} please" for i, w in enumerate(["block", "lost", "pay", "limit", "hello"] * 9)]


@pytest.fixture(scope="module")
def ray_engine():
    ray = pytest.importorskip("ray")
    engine = get_engine("ray", num_cpus=2, concurrency=2)
    engine.start()
    yield engine
    ray.shutdown()


def test_the_default_engine_is_local_and_unknown_names_are_config_errors(monkeypatch):
    import sys

    monkeypatch.delenv("HL_ENGINE", raising=False)
    assert isinstance(get_engine(), LocalEngine)
    monkeypatch.setenv("HL_ENGINE", "spark")
    with pytest.raises(ConfigError, match="spark"):
        get_engine()
    # the default path never imports ray
    assert "hl_debug.engines.ray_engine" not in sys.modules or "ray" in sys.modules


def test_local_engine_batches_in_order():
    batches = list(LocalEngine().encode(FakeEncoder(), TEXTS, batch_size=8))
    assert [len(rows) for rows, _ in batches] == [8, 8, 8, 8, 8, 5]
    np.testing.assert_array_equal(np.concatenate([rows for rows, _ in batches]), np.arange(len(TEXTS)))
    np.testing.assert_array_equal(np.concatenate([v for _, v in batches]), FakeEncoder().transform(TEXTS))


@pytest.mark.slow
def test_ray_encodes_and_scores_exactly_like_local(ray_engine):
    from sklearn.linear_model import LogisticRegression

    local = np.concatenate([v for _, v in LocalEngine().encode(FakeEncoder(), TEXTS, batch_size=8)])
    rows, vecs = zip(*ray_engine.encode(FakeEncoder(), TEXTS, batch_size=8))
    assert all(len(r) <= 8 for r in rows)  # bounded batches back to the driver
    order = np.concatenate(rows)
    np.testing.assert_array_equal(order, np.arange(len(TEXTS)))  # in input order
    np.testing.assert_array_equal(np.concatenate(vecs), local)
    model = LogisticRegression().fit(local, [t.split()[0] for t in TEXTS])
    got = np.concatenate([p for _, p in ray_engine.predict_proba(model, local, batch_size=10)])
    np.testing.assert_allclose(got, model.predict_proba(local), rtol=0, atol=1e-12)


@pytest.mark.slow
def test_the_pipeline_gives_the_same_results_on_both_engines(ray_engine, tmp_path, tiny_export_path):
    from pipelines.full import run_pipeline

    results = {}
    for name in ("local", "ray"):
        store = Store(tmp_path / f"{name}.db")
        try:
            summaries = run_pipeline(store, tiny_export_path, encoder=FakeEncoder(), n_epochs=30, progress=False,
                                     model_dir=str(tmp_path / f"model-{name}"), engine=ray_engine if name == "ray"
                                     else "local")
            embed = next(s for s in summaries if s["step"] == "embed")
            ids, X = store.load_embeddings(FakeEncoder.identity)
            predictions = store.inspector_rows(ids.tolist(), columns=["predicted_label", "confidence", "entropy",
                                                                       "margin"])
            mode = store.last_run("predict")["parameters"]["mode"]
            issues = store.table_rows(get_signal("issues").table, order="score")
            results[name] = (embed["n_embedded"], ids, X, store.table_rows(POINTS), store.table_rows(CLUSTERS),
                             predictions, mode, issues)
        finally:
            store.close()
    (n_local, ids_l, X_l, points_l, clusters_l, pred_l, mode_l, issues_l), \
        (n_ray, ids_r, X_r, points_r, clusters_r, pred_r, mode_r, issues_r) = results.values()
    assert n_local == n_ray > 0
    np.testing.assert_array_equal(ids_l, ids_r)
    np.testing.assert_array_equal(X_l, X_r)
    assert points_l == points_r and clusters_l == clusters_r
    # the local model scored in this process, then in Ray actors: the same answers
    assert (mode_l, mode_r) == ("in-process", "engine:ray")
    assert pred_l == pred_r and all(p["predicted_label"] for p in pred_l)
    # the label-issue step's out-of-fold folds ran as Ray tasks: the same scores and flags
    assert issues_l == issues_r and len(issues_l) > 0


@pytest.mark.slow
def test_folds_run_as_ray_tasks_with_the_same_results(ray_engine):
    from joblib.parallel import get_active_backend
    from sklearn.linear_model import LogisticRegression

    from hl_debug.scoring.label_issues import out_of_fold_probabilities

    X = FakeEncoder().transform(TEXTS)
    y = np.array([["block", "lost", "pay", "limit", "hello"].index(t.split()[0]) for t in TEXTS])
    here = out_of_fold_probabilities(X, y, classifier=LogisticRegression(max_iter=200))
    with LocalEngine().parallel():
        assert type(get_active_backend()[0]).__name__ != "RayBackend"
    with ray_engine.parallel():
        assert type(get_active_backend()[0]).__name__ == "RayBackend"
        on_ray = out_of_fold_probabilities(X, y, classifier=LogisticRegression(max_iter=200))
    np.testing.assert_allclose(on_ray, here, rtol=0, atol=1e-12)


@pytest.mark.slow
def test_a_ray_embed_resumes_with_only_what_is_missing(ray_engine, store, tiny_export_path):
    from hl_debug.steps.embed import embed
    from hl_debug.steps.ingest import ingest

    ingest(store, tiny_export_path)
    texts = store.texts_by_hash()
    first = sorted(texts)[: len(texts) // 2]
    store.save_embeddings(FakeEncoder.identity, first, FakeEncoder().transform([texts[h] for h in first]))
    counts = embed(store, FakeEncoder(), progress=False, engine=ray_engine, chunk_size=4)
    assert counts["n_embedded"] == len(texts) - len(first) and counts["n_cached"] == len(first)
    ids, X = store.load_embeddings(FakeEncoder.identity)
    hashes = store.utterance_columns(("id", "text_hash"))
    by_id = dict(zip(hashes["id"], hashes["text_hash"]))
    np.testing.assert_allclose(X, FakeEncoder().transform([texts[by_id[i]] for i in ids]), atol=0)


def test_local_folds_run_on_threads_with_the_same_results_and_one_by_one_above_the_size_cap():
    from joblib.parallel import get_active_backend
    from sklearn.linear_model import LogisticRegression

    from hl_debug.scoring.label_issues import out_of_fold_probabilities

    X = FakeEncoder().transform(TEXTS)
    y = np.array([["block", "lost", "pay", "limit", "hello"].index(t.split()[0]) for t in TEXTS])
    one_by_one = out_of_fold_probabilities(X, y, classifier=LogisticRegression(max_iter=200))
    engine = LocalEngine(fold_threads=2, fold_threads_max_bytes=X.nbytes)
    with engine.parallel(n_bytes=X.nbytes):
        backend, n_jobs = get_active_backend()
        assert type(backend).__name__ == "ThreadingBackend" and n_jobs == 2
        threaded = out_of_fold_probabilities(X, y, classifier=LogisticRegression(max_iter=200))
    np.testing.assert_array_equal(threaded, one_by_one)
    # above the cap (each thread would copy its fold) and with one thread: the default backend
    default = type(get_active_backend()[0]).__name__
    with engine.parallel(n_bytes=X.nbytes + 1):
        assert type(get_active_backend()[0]).__name__ == default
    with LocalEngine(fold_threads=1).parallel(n_bytes=0):
        assert type(get_active_backend()[0]).__name__ == default
    with pytest.raises(ValueError, match="fold_threads"):
        LocalEngine(fold_threads=0)
