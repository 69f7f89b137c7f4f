"""Annotation queue on small synthetic data: coverage-first order, diversity, out-of-scope rows."""

from __future__ import annotations

import numpy as np
import pytest

from hl_debug.neighbors import knn
from hl_debug.scoring.queue import coverage_graph, coverage_scores, rank_queue, uncertainty_from_probs
from hl_debug.scoring.queue_rows import fits_no_intent, place_out_of_scope, queue_reason
from hl_debug.signals.base import SignalResult
from hl_debug.signals.context import SignalContext
from hl_debug.signals.queue import Queue


def unit(X):
    X = np.asarray(X, dtype=np.float32)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def blobs(sizes, *, dim=24, spread=0.25, seed=0, noise_seed=None):
    """Rows around one random centre per blob (centres from ``seed``, scatter from ``noise_seed``,
    default the same stream); returns (X, blob id per row)."""
    rng = np.random.default_rng(seed)
    centres = unit(rng.normal(size=(len(sizes), dim)))
    if noise_seed is not None:
        rng = np.random.default_rng(noise_seed)
    X = np.vstack([c + spread * rng.normal(size=(s, dim)) / np.sqrt(dim) for c, s in zip(centres, sizes)])
    return unit(X), np.repeat(np.arange(len(sizes)), sizes)


def graph_of(X, k=10):
    idx, sim = knn(X, k)
    return coverage_graph(idx, sim)


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
    cov, knn_ = coverage_scores(X, labeled, k=5)
    assert cov[10:].min() == 1.0 and knn_[10:].max() == 0
    assert cov[9] < 0.2  # unlabelled row inside the labelled region
    clusters = np.array([0] * 10 + [1] * 10)
    cov_c, _ = coverage_scores(X, labeled, k=5, cluster_ids=clusters)
    assert cov_c[9] == pytest.approx(0.5 * cov[9] + 0.5 * 0.1)


def test_coverage_graph_is_symmetric_with_a_unit_diagonal():
    idx = np.array([[1], [2], [0]])
    sim = np.array([[0.8], [-0.2], [0.5]])
    A = coverage_graph(idx, sim).toarray()
    np.testing.assert_allclose(A, A.T)
    np.testing.assert_allclose(np.diag(A), 1.0)
    assert A[0, 1] == pytest.approx(0.8) and A[1, 2] == 0.0 and A[0, 2] == pytest.approx(0.5)  # clipped at 0
    with pytest.raises(ValueError, match="one shape"):
        coverage_graph(idx, sim[:2])


def test_top_of_the_queue_covers_every_unlabelled_blob_where_random_does_not():
    # 12 blobs of very different sizes; blob 0 is labelled. The queue's top 11 must hold one
    # row of each other blob (random draws mostly from the big ones).
    sizes = [30, 60, 40, 30, 20, 15, 12, 10, 8, 8, 6, 6]
    X, blob = blobs(sizes)
    labeled = blob == 0
    cand = np.flatnonzero(~labeled)
    out = rank_queue(graph_of(X, k=32), candidates=cand, labeled=labeled, weights=np.ones(len(X)))
    top = blob[cand[out["order"][:11]]]
    assert len(set(top.tolist())) == 11 and 0 not in top
    rng = np.random.default_rng(0)
    random_distinct = np.mean([len(set(blob[rng.permutation(cand)[:11]].tolist())) for _ in range(200)])
    assert random_distinct < 9.5  # the planted case is one where coverage matters
    assert sorted(out["order"].tolist()) == list(range(len(cand)))
    assert np.all(np.diff(out["score"]) <= 1e-12) and out["score"][0] == pytest.approx(1.0)


def test_labelling_the_top_of_the_queue_teaches_a_model_more_than_a_random_top():
    # Simulated annotation on a planted case: two blobs labelled, ten more unlabelled; label the
    # queue's top 10 with the truth, retrain, score on fresh rows of every blob.
    from sklearn.linear_model import LogisticRegression

    sizes = [40, 40, 70, 50, 40, 30, 25, 20, 15, 12, 10, 10]
    X, blob = blobs(sizes, seed=8)
    X_test, blob_test = blobs(sizes, seed=8, noise_seed=9)
    labeled = np.zeros(len(X), dtype=bool)
    labeled[[np.flatnonzero(blob == b)[0] for b in (0, 1)]] = True
    cand = np.flatnonzero(~labeled)

    def accuracy(extra):
        rows = np.r_[np.flatnonzero(labeled), extra]
        clf = LogisticRegression(C=10, max_iter=1000).fit(X[rows], blob[rows])
        return (clf.predict(X_test) == blob_test).mean()

    out = rank_queue(graph_of(X, k=32), candidates=cand, labeled=labeled, weights=np.ones(len(X)))
    queued = accuracy(cand[out["order"][:10]])
    rng = np.random.default_rng(0)
    random = np.mean([accuracy(rng.permutation(cand)[:10]) for _ in range(20)])
    assert queued >= 0.95 and queued > random + 0.1, (queued, random)


def test_an_outlier_comes_after_the_dense_unlabelled_regions_even_when_most_uncertain():
    X, blob = blobs([20, 25, 25])
    rng = np.random.default_rng(3)
    X = np.vstack([X, unit(rng.normal(size=(1, X.shape[1])))])  # row 70: resembles nothing
    labeled = np.r_[blob == 0, False]
    cand = np.flatnonzero(~labeled)
    weights = np.full(len(X), 0.5)
    weights[-1] = 1.3  # the model is most unsure about the outlier
    out = rank_queue(graph_of(X), candidates=cand, labeled=labeled, weights=weights)
    first_two = set(np.r_[blob, -1][cand[out["order"][:2]]].tolist())
    assert first_two == {1, 2}  # one pick per dense unlabelled blob first
    assert list(cand[out["order"]]).index(70) >= 2


def test_rank_queue_puts_near_duplicates_last():
    base = unit(np.random.default_rng(1).normal(size=(6, 16)))  # six unrelated directions
    X = unit(np.vstack([base, base[0] + 0.001]))  # row 6: near-duplicate of row 0
    cand = np.arange(len(X))
    weights = np.full(len(X), 0.5)
    weights[[0, 6]] = 1.0  # the pair is worth most
    out = rank_queue(graph_of(X, k=3), candidates=cand, labeled=np.zeros(len(X), dtype=bool), weights=weights,
                     duplicate_threshold=0.9)
    first, last = cand[out["order"][0]], cand[out["order"][-1]]
    assert {first, last} == {0, 6}  # labelling either covers both: the other goes last
    assert cand[out["duplicate_of"][-1]] == first and out["score"][-1] == 0


def test_group_decay_spreads_the_top_over_groups():
    X, blob = blobs([40, 40], seed=2, spread=0.9)
    labeled = np.zeros(len(X), dtype=bool)
    cand = np.arange(len(X))
    weights = np.where(blob == 0, 1.0, 0.6)  # group 0 is far more uncertain
    plain = rank_queue(graph_of(X), candidates=cand, labeled=labeled, weights=weights, diversity=0.0,
                       group_decay=1.0, groups=blob)
    spread = rank_queue(graph_of(X), candidates=cand, labeled=labeled, weights=weights, diversity=0.0,
                        group_decay=0.3, groups=blob)
    assert (blob[plain["order"][:6]] == 1).sum() < (blob[spread["order"][:6]] == 1).sum()
    assert np.all(np.diff(spread["score"]) <= 1e-12)


def test_rank_queue_bounded_greedy_keeps_a_full_non_increasing_order():
    X, blob = blobs([60] * 5, seed=7, spread=1.0)
    labeled = np.zeros(len(X), dtype=bool)
    labeled[::7] = True
    cand = np.flatnonzero(~labeled)
    w = np.random.default_rng(7).uniform(size=len(X))
    args = dict(candidates=cand, labeled=labeled, weights=w, groups=blob[cand])
    full = rank_queue(graph_of(X), **args)
    bounded = rank_queue(graph_of(X), **args, max_greedy=40)
    assert sorted(bounded["order"].tolist()) == list(range(len(cand)))
    np.testing.assert_array_equal(bounded["order"][:40], full["order"][:40])
    assert np.all(np.diff(bounded["score"]) <= 1e-12)


def test_rank_queue_rejects_bad_input():
    A = coverage_graph(np.array([[1], [0]]), np.array([[0.5], [0.5]]))
    with pytest.raises(ValueError, match="weights must be non-negative"):
        rank_queue(A, candidates=[1], labeled=[True, False], weights=np.array([1.0, -1.0]))
    with pytest.raises(ValueError, match="unlabelled rows"):
        rank_queue(A, candidates=[0], labeled=[True, False], weights=np.ones(2))
    with pytest.raises(ValueError, match="group_decay"):
        rank_queue(A, candidates=[1], labeled=[True, False], weights=np.ones(2), group_decay=0)
    with pytest.raises(ValueError, match="groups must have"):
        rank_queue(A, candidates=[1], labeled=[True, False], weights=np.ones(2), groups=[0, 1])


def test_fits_no_intent_flags_only_the_row_far_from_every_annotation():
    X, blob = blobs([30, 30], seed=4, spread=0.6)
    rng = np.random.default_rng(104)  # not blobs' seed: a direction of its own
    X = np.vstack([X, unit(rng.normal(size=(1, X.shape[1])))])  # row 60: fits no intent
    labeled = np.r_[np.arange(60) % 3 != 0, False]
    idx, sim = knn(X, 8)
    no_fit, nearest, threshold = fits_no_intent(idx, sim, labeled, quantile=0.02)
    assert no_fit[60] and nearest[60] < threshold
    assert no_fit[:60].sum() <= 1  # in-scope rows: the rule's false-positive rate is the quantile
    assert not no_fit[labeled].any()
    with pytest.raises(ValueError, match="quantile"):
        fits_no_intent(idx, sim, labeled, quantile=1.5)


def test_place_out_of_scope_keeps_one_representative_per_group_and_the_rest_after():
    ranked = {"order": np.arange(8), "score": np.linspace(1, 0.3, 8), "duplicate_of": np.full(8, -1)}
    candidate = np.array([False, True, True, False, True, False, True, False])
    group = np.array([-1, 5, 5, -1, 7, -1, -1, -1])  # 6: a candidate in no group
    out = place_out_of_scope(ranked, candidate=candidate, group=group)
    assert out["order"].tolist() == [0, 1, 3, 4, 5, 7, 2, 6]
    assert out["representative"].tolist() == [False, True, False, True, False, False, False, False]
    assert out["group_first"].tolist() == [-1, 1, -1, 3, -1, -1, 1, -1]
    assert np.all(np.diff(out["score"]) <= 1e-12) and (out["score"][-2:] == 0).all()


def test_queue_reason_mentions_the_evidence():
    text = queue_reason(predicted="card_issue", uncertainty=0.8, runner_up="bill_question", knn_labeled=0, k=10,
                        cluster_id=4, cluster_labeled_share=0.1, duplicate_of_text="lost my card", covers=3,
                        nearest=0.61)
    assert "card_issue vs bill_question" in text and "0/10" in text and "cluster 4 10% labelled" in text
    assert "near-duplicate" in text and "covers 3 rows" in text and "nearest annotated 0.61" in text
    assert "fits no intent (nearest annotated 0.31 < 0.52)" in queue_reason(
        predicted="x", uncertainty=0.1, runner_up="y", knn_labeled=1, k=5, no_fit=(0.31, 0.52))
    later = queue_reason(predicted="x", uncertainty=0.1, runner_up="y", knn_labeled=1, k=5, oos_candidate=True,
                         oos_group=3, oos_first_rank=2)
    assert "out-of-scope candidate, group 3 (queued at rank 2)" in later


# -- the signal on a tiny synthetic context ---------------------------------------------------


def tiny_context(results=None):
    """Two labelled intents (blobs 0, 1, half annotated), an unlabelled group (blob 2) and a lone outlier."""
    X, blob = blobs([60, 60, 6], seed=5, spread=0.6)
    rng = np.random.default_rng(105)  # not blobs' seed: a direction of its own
    X = np.vstack([X, unit(rng.normal(size=(1, X.shape[1])))])
    blob = np.r_[blob, 3]
    labels = [("card" if b == 0 else "bill") if b < 2 and i % 2 == 0 else None for i, b in enumerate(blob)]
    ctx = SignalContext(ids=np.arange(100, 100 + len(X)), texts=[f"t{i}" for i in range(len(X))], vectors=X,
                        labels=labels, splits=["training" if v else None for v in labels])
    if results is not None:
        ctx.results.update(results)
    return ctx, blob


def test_queue_signal_without_oos_preselects_nothing_for_a_row_that_fits_no_intent():
    ctx, blob = tiny_context()
    rows = Queue(k=5).find(ctx).rows
    by_id = {r["id"]: r for r in rows}
    assert len(rows) == int((~ctx.annotated).sum())
    outlier = by_id[100 + len(blob) - 1]
    assert outlier["predicted_label"] is None and "fits no intent" in outlier["reason"]
    in_scope = [r for r in rows if blob[r["id"] - 100] < 2]
    right = [r["predicted_label"] == ("card" if blob[r["id"] - 100] == 0 else "bill") for r in in_scope]
    assert sum(right) >= len(in_scope) - 2  # the rule's false-positive rate: about 2% of in-scope rows
    assert all(r["predicted_label"] is None for r in rows if blob[r["id"] - 100] == 2)  # the unknown intent
    assert all(r["oos_group_id"] is None for r in rows)


def test_queue_signal_with_an_oos_result_places_one_per_group_and_preselects_none():
    ctx, blob = tiny_context()
    group_rows = [int(i) for i in ctx.ids[blob == 2]]
    outlier = int(ctx.ids[-1])
    flagged_rows = (blob == 2) | (ctx.ids == outlier)  # the oos table's columns: row i is the context's row i
    oos = SignalResult(columns={"id": ctx.ids, "is_candidate": flagged_rows.astype(np.int64),
                                "group_id": np.where(blob == 2, 9.0, np.nan)})
    ctx, _ = tiny_context({"oos": oos})
    rows = Queue(k=5).find(ctx).rows
    flagged = [r for r in rows if r["id"] in group_rows or r["id"] == outlier]
    assert all(r["predicted_label"] is None for r in flagged)
    assert {r["oos_group_id"] for r in rows if r["id"] in group_rows} == {9}
    assert next(r for r in rows if r["id"] == outlier)["oos_group_id"] is None
    ranks = sorted(r["rank"] for r in rows if r["id"] in group_rows)
    n_in_scope = sum(1 for r in rows if r not in flagged)
    assert ranks[0] <= n_in_scope and all(rk > n_in_scope + 1 for rk in ranks[1:])  # one representative up front
    first = next(r for r in rows if r["rank"] == ranks[0])
    assert "queued for its group" in first["reason"]
    assert all(r["predicted_label"] is not None for r in rows if r not in flagged)
    assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)
