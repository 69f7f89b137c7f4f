"""Annotation queue on small synthetic data: uncertainty × coverage with diversity."""

from __future__ import annotations

import numpy as np
import pytest

from hl_debug.scoring.queue import coverage_scores, queue_reason, rank_queue, uncertainty_from_probs


def unit(X):
    X = np.asarray(X, dtype=np.float32)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def test_uncertainty_methods():
    P = np.array([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.5, 0.5, 0.0]])
    ent = uncertainty_from_probs(P)
    assert ent[0] == pytest.approx(0) and ent[1] == pytest.approx(1) and 0 < ent[2] < 1
    np.testing.assert_allclose(uncertainty_from_probs(P, method="margin"), [0.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="valid: entropy, margin"):
        uncertainty_from_probs(P, method="bald")
    with pytest.raises(ValueError, match="n_classes >= 2"):
        uncertainty_from_probs(np.ones((2, 1)))


def test_coverage_prefers_unannotated_regions():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(10, 8)) + np.eye(8)[0] * 5   # labelled region
    b = rng.normal(size=(10, 8)) + np.eye(8)[1] * 5   # nobody labelled here
    X = unit(np.vstack([a, b]))
    labeled = np.array([True] * 9 + [False] + [False] * 10)
    cov, knn = coverage_scores(X, labeled, k=5)
    assert cov[10:].min() == 1.0 and knn[10:].max() == 0
    assert cov[9] < 0.2  # unlabelled row inside the labelled region
    clusters = np.array([0] * 10 + [1] * 10)
    cov_c, _ = coverage_scores(X, labeled, k=5, cluster_ids=clusters)
    assert cov_c[9] == pytest.approx(0.5 * cov[9] + 0.5 * 0.1)


def test_rank_queue_puts_near_duplicates_last_and_uncertain_uncovered_first():
    rng = np.random.default_rng(1)
    base = unit(rng.normal(size=(5, 16)))
    X = unit(np.vstack([base, base[0] + 0.001]))  # row 5: near-duplicate of row 0
    unc = np.array([0.9, 0.5, 0.4, 0.3, 0.2, 0.89])
    cov = np.array([1.0, 0.8, 0.8, 0.8, 0.8, 1.0])
    out = rank_queue(X, uncertainty=unc, coverage=cov, duplicate_threshold=0.9)
    assert out["order"][0] == 0  # planted: most uncertain in an uncovered region
    assert out["order"][-1] == 5 and out["duplicate_of"][-1] == 0 and out["score"][-1] == 0
    assert sorted(out["order"].tolist()) == list(range(6))
    assert (np.diff(out["score"]) <= 1e-12).all()  # the score column reads in queue order


def test_rank_queue_spreads_over_clusters():
    X = unit(np.eye(4) + 0.01)
    unc = np.array([0.9, 0.89, 0.88, 0.5])
    cov = np.ones(4)
    clusters = np.array([0, 0, 0, 1])
    out = rank_queue(X, uncertainty=unc, coverage=cov, cluster_ids=clusters, cluster_decay=0.5,
                     similarity_penalty=0.0)
    assert out["order"].tolist()[:2] == [0, 3]  # second pick jumps to the other cluster


def test_rank_queue_rejects_bad_input():
    with pytest.raises(ValueError, match="uncertainty must lie in"):
        rank_queue(np.eye(2), uncertainty=np.array([0.5, 1.5]), coverage=np.ones(2))
    with pytest.raises(ValueError, match="X must be"):
        rank_queue(np.eye(2), uncertainty=np.ones(3), coverage=np.ones(2))


def test_queue_reason_mentions_the_evidence():
    text = queue_reason(predicted="card_issue", uncertainty=0.8, runner_up="bill_question", knn_labeled=0, k=10,
                        cluster_id=4, cluster_labeled_share=0.1, duplicate_of_text="lost my card")
    assert "card_issue vs bill_question" in text and "0/10" in text and "cluster 4 10% labelled" in text
    assert "near-duplicate" in text


def test_rank_queue_bounded_greedy_keeps_a_full_non_increasing_order():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(300, 8)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    unc, cov = rng.uniform(size=300), rng.uniform(size=300)
    clusters = rng.integers(-1, 6, size=300)
    full = rank_queue(X, uncertainty=unc, coverage=cov, cluster_ids=clusters)
    bounded = rank_queue(X, uncertainty=unc, coverage=cov, cluster_ids=clusters, max_greedy=40)
    assert sorted(bounded["order"].tolist()) == list(range(300))
    np.testing.assert_array_equal(bounded["order"][:40], full["order"][:40])
    assert np.all(np.diff(bounded["score"]) <= 1e-12)
