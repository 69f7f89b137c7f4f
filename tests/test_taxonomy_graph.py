"""Split evidence from an intent's own neighbour graph, on tiny synthetic blobs."""

import numpy as np
import pytest

from hl_debug.scoring.taxonomy_graph import cut_leak, spectral_bipartition, valley_depth, within_knn


def _unit(X):
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def _one_blob(n=120, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    return _unit(np.eye(dim)[0] * 3 + rng.normal(size=(n, dim)) * 0.5)


def _two_blobs(n=120, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    centre = np.where(np.arange(n) < n // 2, 0, 1)
    X = _unit(np.eye(dim)[centre] * 3 + rng.normal(size=(n, dim)) * 0.5)
    return X, centre


def _two_means(X):
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=2, n_init=4, random_state=0).fit_predict(X)


def test_within_knn_excludes_self_and_orders_by_similarity():
    X = _one_blob(30)
    nb = within_knn(X, 5)
    assert nb.shape == (30, 5)
    assert not (nb == np.arange(30)[:, None]).any()
    sims = np.take_along_axis(X @ X.T, nb, axis=1)
    assert (np.diff(sims, axis=1) <= 1e-12).all()
    assert within_knn(X[:1], 5).shape == (1, 0)


def test_two_blobs_leak_less_than_one_blob_cut_in_two():
    X2, truth = _two_blobs()
    X1 = _one_blob()
    leak2 = cut_leak(within_knn(X2, 10), truth)
    leak1 = cut_leak(within_knn(X1, 10), _two_means(X1))
    assert leak2 < 0.05 < leak1
    # a random cut of the two blobs leaks about half its edges
    rng = np.random.default_rng(1)
    assert cut_leak(within_knn(X2, 10), rng.integers(0, 2, len(X2))) > 0.35
    assert cut_leak(within_knn(X2, 10), np.zeros(len(X2), int)) == 1.0


def test_spectral_bipartition_finds_the_blobs_and_beats_one_blob():
    X2, truth = _two_blobs()
    g, leak2 = spectral_bipartition(within_knn(X2, 10), min_size=24)
    agree = max((g == truth).mean(), (g != truth).mean())
    assert agree > 0.95
    _, leak1 = spectral_bipartition(within_knn(_one_blob(), 10), min_size=24)
    assert leak2 < leak1
    # the size floor is honoured
    assert min(np.bincount(g, minlength=2)) >= 24


def test_valley_depth_two_blobs_above_one_blob():
    X2, truth = _two_blobs()
    X1 = _one_blob()
    assert valley_depth(X2, truth) > 0.8
    assert valley_depth(X1, _two_means(X1)) < valley_depth(X2, truth)
    assert valley_depth(X1, np.zeros(len(X1), int)) == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_orders_hold_across_seeds(seed):
    X2, truth = _two_blobs(seed=seed)
    X1 = _one_blob(seed=seed)
    assert cut_leak(within_knn(X2, 10), truth) < cut_leak(within_knn(X1, 10), _two_means(X1))
