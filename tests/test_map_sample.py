"""The map of a large export: sample fit, UMAP transform and HDBSCAN approximate_predict for the rest."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from hl_debug.errors import ConfigError
from hl_debug.models.map import MapAnalyzer, approx_threshold
from hl_debug.models.map_sample import SampleIndex, _vote, place_clusters, stratified_sample


@pytest.fixture(scope="module")
def blobs():
    X, y = make_blobs(n_samples=1200, centers=6, n_features=16, random_state=0, cluster_std=1.0)
    X = (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)
    return X, [f"i{v}" for v in y], y


def test_stratified_sample_keeps_every_intent_in_proportion():
    labels = ["a"] * 600 + ["b"] * 300 + ["rare"] * 2 + [None] * 98
    s = stratified_sample(labels, 250, seed=0)
    assert np.all(np.diff(s) > 0)
    got = [labels[i] for i in s]
    assert got.count("a") == 150 and got.count("b") == 75 and got.count("rare") == 1 and got.count(None) == 24
    np.testing.assert_array_equal(s, stratified_sample(labels, 250, seed=0))
    assert not np.array_equal(s, stratified_sample(labels, 250, seed=1))
    np.testing.assert_array_equal(stratified_sample(labels, 5000), np.arange(1000))


def test_sample_index_is_exact_cosine_search(blobs):
    X = blobs[0]
    idx, dist = SampleIndex(X[:500]).query(X[500:600], 7)
    S = X[500:600] @ X[:500].T
    np.testing.assert_array_equal(idx, np.argsort(-S, axis=1, kind="stable")[:, :7])
    np.testing.assert_allclose(dist, 1 - np.sort(S, axis=1)[:, ::-1][:, :7], atol=1e-5)


def test_above_the_threshold_the_map_is_fitted_on_a_sample_and_agrees(blobs):
    X, labels, y = blobs
    exact = MapAnalyzer(n_epochs=60, approx_above=5000).fit(X, labels)
    assert exact.sample_ is None
    approx = MapAnalyzer(n_epochs=60, approx_above=1000, sample_size=500).fit(X, labels)
    assert approx.sample_ is not None and 480 <= len(approx.sample_) <= 520
    assert approx.embedding_.shape == (1200, 2) and approx.reduced_.shape == (1200, 5)
    assert approx.labels_.shape == approx.probabilities_.shape == approx.outlier_scores_.shape == (1200,)
    assert np.isfinite(approx.embedding_).all() and np.isfinite(approx.probabilities_).all()
    assert adjusted_rand_score(exact.labels_, approx.labels_) >= 0.95
    assert adjusted_rand_score(y, approx.labels_) >= 0.95


def _with_outliers(X):
    """The blobs' first 5 columns, then 40 scattered rows (placed, never sampled): some noise to place."""
    rng = np.random.default_rng(0)
    X = X[:, :5].astype(np.float64)
    return np.vstack([X, rng.uniform(X.min(), X.max(), size=(40, 5))])


def test_placed_rows_take_the_part_the_rules_cut_them_into(blobs):
    import hdbscan

    X = _with_outliers(blobs[0])
    sample = np.arange(0, 1200, 2)
    model = hdbscan.HDBSCAN(min_cluster_size=10, prediction_data=True).fit(X[sample])
    raw = model.labels_.astype(np.int64)
    final = raw.copy()
    big = np.bincount(raw[raw >= 0]).argmax()
    half = (raw == big) & (X[sample, 0] > np.median(X[sample][raw == big, 0]))
    final[half] = raw.max() + 1  # the rules cut one raw cluster in two
    labels, probs, _ = place_clusters(model, X, sample, raw, final, model.probabilities_, model.outlier_scores_)
    np.testing.assert_array_equal(labels[sample], final)
    rest = np.setdiff1d(np.arange(len(X)), sample)
    pred = hdbscan.approximate_predict(model, X[rest])[0]
    whole = (pred >= 0) & (pred != big)
    np.testing.assert_array_equal(labels[rest][whole], pred[whole])  # untouched clusters: HDBSCAN's answer
    cut = rest[pred == big]
    assert set(labels[cut]) <= {big, raw.max() + 1} and len(set(labels[cut])) == 2
    # a row HDBSCAN calls noise takes the vote of its 5 nearest sample rows (noise where they are)
    from sklearn.neighbors import NearestNeighbors

    lost = rest[pred < 0]
    assert len(lost)
    _, near = NearestNeighbors(n_neighbors=5).fit(X[sample]).kneighbors(X[lost])
    np.testing.assert_array_equal(labels[lost], _vote(final[near]))
    assert (probs[lost][labels[lost] == -1] == 0).all()


def test_without_the_vote_noise_stays_noise(blobs, monkeypatch):
    import hdbscan

    from hl_debug.models import map_sample

    monkeypatch.setattr(map_sample, "NOISE_BY_VOTE", False)
    X = _with_outliers(blobs[0])
    sample = np.arange(0, 1200, 2)
    model = hdbscan.HDBSCAN(min_cluster_size=10, prediction_data=True).fit(X[sample])
    raw = model.labels_.astype(np.int64)
    labels, probs, _ = place_clusters(model, X, sample, raw, raw, model.probabilities_, model.outlier_scores_)
    rest = np.setdiff1d(np.arange(len(X)), sample)
    pred = hdbscan.approximate_predict(model, X[rest])[0]
    assert (labels[rest][pred < 0] == -1).all() and (probs[rest][pred < 0] == 0).all()


def test_the_threshold_comes_from_the_setting(monkeypatch):
    monkeypatch.delenv("HL_APPROX_ABOVE", raising=False)
    assert approx_threshold() == 50000 and approx_threshold(10) == 10
    monkeypatch.setenv("HL_APPROX_ABOVE", "1234")
    assert approx_threshold() == 1234 and MapAnalyzer().approx_threshold() == 1234
    monkeypatch.setenv("HL_APPROX_ABOVE", "many")
    with pytest.raises(ConfigError, match="approx_above"):
        approx_threshold()


def test_below_the_threshold_nothing_changes(blobs):
    X, labels, _ = blobs
    a = MapAnalyzer(n_epochs=60).fit(X, labels)
    assert a.sample_ is None
    assert MapAnalyzer(n_epochs=2, approx_above=10, sample_size=1200).fit(X, labels).sample_ is None  # no smaller
    c = MapAnalyzer(n_epochs=60, approx_above=1200).fit(X, labels)
    np.testing.assert_array_equal(a.embedding_, c.embedding_)
    np.testing.assert_array_equal(a.labels_, c.labels_)


def test_the_analyze_step_fills_the_runs_memo_even_when_it_is_empty(tiny_store):
    from hl_debug.neighbors import KnnMemo
    from hl_debug.steps.analyze import analyze
    from hl_debug.steps.embed import embed
    from tests.fakes import FakeEncoder

    embed(tiny_store, FakeEncoder(), progress=False)
    memo = KnnMemo(approx_above=50000)
    assert not memo  # empty: falsy, and still the run's memo
    analyze(tiny_store, MapAnalyzer(n_epochs=20), progress=False, knn_memo=memo)
    assert len(memo) == 1
