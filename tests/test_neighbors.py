"""The shared exact-cosine kNN."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from hl_debug import neighbors
from hl_debug.neighbors import knn


def _unit(rng, n, d):
    X = rng.normal(size=(n, d)).astype(np.float32)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def test_matches_sklearn_and_excludes_self(monkeypatch):
    monkeypatch.setattr(neighbors, "BLOCK_FLOATS", 500)  # force several blocks
    X = _unit(np.random.default_rng(0), 120, 16)
    idx, sim = knn(X, 7, cache=False)
    d, ref = NearestNeighbors(n_neighbors=8, metric="cosine", algorithm="brute").fit(X).kneighbors(X)
    np.testing.assert_array_equal(idx, ref[:, 1:])
    np.testing.assert_allclose(sim, 1 - d[:, 1:], atol=1e-5)
    assert not (idx == np.arange(120)[:, None]).any()
    assert np.all(np.diff(sim, axis=1) <= 1e-7)


def test_exact_duplicates_are_each_others_nearest():
    X = _unit(np.random.default_rng(1), 30, 8)
    X[5] = X[17]
    idx, sim = knn(X, 3, cache=False)
    assert idx[5, 0] == 17 and idx[17, 0] == 5 and sim[5, 0] == pytest.approx(1.0)


def test_cached_by_content_and_sliced_for_smaller_k():
    neighbors.clear_cache()
    X = _unit(np.random.default_rng(2), 60, 8)
    idx10, _ = knn(X, 10, cache=True)
    idx3, sim3 = knn(X.copy(), 3, cache=True)  # same content, another array: a cache hit
    np.testing.assert_array_equal(idx3, idx10[:, :3])
    assert len(neighbors._GLOBAL) == 1
    with pytest.raises(ValueError):
        idx3[0, 0] = 1  # shared results are read-only


def test_the_memo_is_opt_in_and_results_do_not_depend_on_it():
    neighbors.clear_cache()
    X = _unit(np.random.default_rng(3), 50, 8)
    X[7] = X[8] = X[9]  # ties at the boundary are broken alike with or without the memo
    plain = knn(X, 2)
    assert not len(neighbors._GLOBAL)
    memo = knn(X, 2, cache=True)
    np.testing.assert_array_equal(plain[0], memo[0])
    np.testing.assert_array_equal(plain[1], memo[1])
    assert len(neighbors._GLOBAL) == 1


def test_subset_knn_reads_a_full_knn_handed_to_it():
    from hl_debug.neighbors import subset_knn

    neighbors.clear_cache()
    X = _unit(np.random.default_rng(4), 80, 8)
    rows = np.arange(0, 80, 2)
    full = knn(X, 40)
    np.testing.assert_array_equal(subset_knn(X, rows, 5, full=full)[0], subset_knn(X, rows, 5)[0])
    assert not len(neighbors._GLOBAL)


def test_bad_input():
    with pytest.raises(ValueError, match="k must be between 1"):
        knn(np.eye(3, dtype=np.float32), 3)
    with pytest.raises(ValueError, match="2-D"):
        knn(np.zeros(3, dtype=np.float32), 1)


@pytest.mark.parametrize("share", [0.3, 0.9])
def test_subset_knn_equals_knn_of_the_subset(share):
    from hl_debug.neighbors import subset_knn

    neighbors.clear_cache()
    rng = np.random.default_rng(1)
    X = rng.normal(size=(400, 16)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    X[7] = X[3]  # an exact duplicate: a tie broken by index
    rows = np.flatnonzero(rng.random(400) < share)
    rows = np.union1d(rows, [3, 7])
    idx, sim = subset_knn(X, rows, 10)
    want_idx, want_sim = knn(X[rows], 10, cache=False)
    np.testing.assert_allclose(sim, want_sim, atol=1e-6)
    # the same rows, in the same order, except among exact ties at the 10th place (where the
    # direct query may cut either twin; the subset keeps the lower index, as ties rank)
    below_cut = sim > sim[:, -1:] + 1e-6
    np.testing.assert_array_equal(np.where(below_cut, idx, -1), np.where(below_cut, want_idx, -1))
    assert (np.diff(sim, axis=1) <= 1e-7).all()


def test_subset_knn_rejects_unsorted_rows_and_bad_k():
    from hl_debug.neighbors import subset_knn

    X = np.eye(6, dtype=np.float32)
    with pytest.raises(ValueError, match="strictly increasing"):
        subset_knn(X, [3, 1, 2], 1)
    with pytest.raises(ValueError, match="k must be"):
        subset_knn(X, [0, 1, 2], 3)


def test_a_run_memo_is_shared_explicitly_and_never_global():
    from hl_debug.neighbors import KnnMemo, knn_graph

    neighbors.clear_cache()
    X = _unit(np.random.default_rng(6), 70, 8)
    memo = KnnMemo()
    graph = knn_graph(X, 11, memo=memo)  # the analyze step's UMAP graph
    assert len(memo) == 1 and not len(neighbors._GLOBAL)
    idx, sim = knn(X.copy(), 20, memo=memo)  # the signals step: same vectors, a hit (width >= 32 was computed)
    assert len(memo) == 1
    np.testing.assert_array_equal(idx[:, :10], graph[0][:, 1:])
    np.testing.assert_array_equal((idx, sim), knn(X, 20))  # the same answer as computing afresh
    knn(_unit(np.random.default_rng(7), 70, 8), 3, memo=memo)
    knn(_unit(np.random.default_rng(8), 70, 8), 3, memo=memo)
    assert len(memo) == memo.max_entries  # bounded: the oldest entry went


# -- the approximate index (usearch) above the size threshold ------------------------------------


def _clustered(rng, n, d, centres=12):
    C = rng.normal(size=(centres, d))
    X = (C[rng.integers(0, centres, n)] + 0.35 * rng.normal(size=(n, d))).astype(np.float32)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def test_approximate_knn_has_the_exact_conventions_and_high_recall():
    X = _clustered(np.random.default_rng(3), 1500, 24)
    X[7] = X[900]  # an exact duplicate: each is the other's nearest, never itself
    idx, sim = neighbors.approximate_knn(X, 12)
    ref, ref_sim = knn(X, 12)
    assert idx.shape == (1500, 12) and sim.dtype == np.float32
    assert not (idx == np.arange(1500)[:, None]).any()
    assert np.all(np.diff(sim, axis=1) <= 1e-6)
    np.testing.assert_allclose(sim, np.einsum("ij,ikj->ik", X, X[idx]), atol=1e-5)  # exact similarities
    recall = np.mean([len(set(a[:10]) & set(b[:10])) / 10 for a, b in zip(idx, ref)])
    assert recall >= 0.98
    assert idx[7, 0] == 900 and idx[900, 0] == 7
    again, _ = neighbors.approximate_knn(X, 12)
    np.testing.assert_array_equal(again, idx)  # one build thread: deterministic


def test_the_memo_switches_to_the_index_only_above_its_threshold(monkeypatch):
    X = _clustered(np.random.default_rng(4), 300, 16)
    calls = []
    real = neighbors.approximate_knn
    monkeypatch.setattr(neighbors, "approximate_knn", lambda *a, **k: calls.append(1) or real(*a, **k))
    exact = knn(X, 5)
    assert np.array_equal(knn(X, 5, memo=neighbors.KnnMemo(approx_above=300))[0], exact[0]) and not calls
    assert np.array_equal(knn(X, 5, memo=neighbors.KnnMemo())[0], exact[0]) and not calls  # None: always exact
    knn(X, 5, memo=neighbors.KnnMemo(approx_above=299))
    assert calls == [1]
