"""Label-issue scoring on small synthetic embeddings with planted label errors."""

from __future__ import annotations

import numpy as np
import pytest

from hl_debug.scoring.label_detector import LabelIssueDetector, prior_shift
from hl_debug.scoring.label_issues import (
    CLEANLAB_METHODS,
    api_disagreement,
    api_distribution,
    cleanlab_issue_mask,
    cleanlab_scores,
    cluster_label_agreement,
    cluster_label_distribution,
    confusable_classes,
    encode_labels,
    ensemble_distribution,
    inject_noise,
    issue_scores,
    knn_label_distribution,
    out_of_fold_probabilities,
)

PLANTED = (3, 47, 95, 130)


def blobs(n_per: int = 40, n_classes: int = 4, dim: int = 16, seed: int = 0):
    """Well separated classes on the unit sphere; returns (X, true_labels)."""
    rng = np.random.default_rng(seed)
    centers = np.eye(dim)[:n_classes] * 3
    X = np.vstack([centers[c] + rng.normal(scale=0.6, size=(n_per, dim)) for c in range(n_classes)])
    y = np.repeat(np.arange(n_classes), n_per)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X.astype(np.float32), y


@pytest.fixture(scope="module")
def planted():
    X, truth = blobs()
    noisy = truth.copy()
    for i in PLANTED:
        noisy[i] = (truth[i] + 1) % 4
    return X, truth, noisy


def test_out_of_fold_probabilities_are_distributions_and_honest(planted):
    X, truth, noisy = planted
    P = out_of_fold_probabilities(X, noisy, n_classes=4)
    assert P.shape == (len(noisy), 4)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, atol=1e-9)
    # The flipped rows never trained on themselves: their given label gets low probability.
    assert all(P[i, noisy[i]] < 0.5 for i in PLANTED)
    assert (P.argmax(axis=1) == truth).mean() > 0.95


def test_cleanlab_scores_rank_planted_errors_lowest(planted):
    X, _, noisy = planted
    P = out_of_fold_probabilities(X, noisy, n_classes=4)
    for method in CLEANLAB_METHODS:
        s = cleanlab_scores(noisy, P, method=method)
        assert set(np.argsort(s)[:4]) == set(PLANTED), method
    assert cleanlab_issue_mask(noisy, P)[list(PLANTED)].sum() >= 3


def test_knn_distribution_excludes_the_row_itself(planted):
    X, truth, noisy = planted
    Q = knn_label_distribution(X, noisy, n_classes=4, k=10)
    np.testing.assert_allclose(Q.sum(axis=1), 1.0)
    for i in PLANTED:
        assert Q[i, noisy[i]] < 0.1 and Q[i].argmax() == truth[i]


def test_cluster_signals_mark_the_minority_label():
    labels = np.array([0, 0, 0, 1, 1, 1, 0])
    clusters = np.array([5, 5, 5, 5, 9, 9, -1])
    agree = cluster_label_agreement(labels, clusters)
    assert agree[3] == 0.0 and agree[0] == pytest.approx(2 / 3) and np.isnan(agree[6])
    D = cluster_label_distribution(labels, clusters, n_classes=2)
    assert D[3].argmax() == 0 and np.isnan(D[6]).all()


def test_api_signals():
    labels = np.array([0, 1, 2])
    dis = api_disagreement(labels, np.array([0, 2, -1]), np.array([0.9, 0.8, np.nan]))
    assert dis[0] == 0 and dis[1] == pytest.approx(0.8) and np.isnan(dis[2])
    D = api_distribution(np.array([1, -1]), np.array([0.7, np.nan]), n_classes=3)
    np.testing.assert_allclose(D[0], [0.15, 0.7, 0.15])
    assert np.isnan(D[1]).all()


def test_ensemble_skips_missing_members():
    A = np.array([[0.8, 0.2], [0.5, 0.5]])
    B = np.array([[np.nan, np.nan], [0.1, 0.9]])
    R = ensemble_distribution(A, B)
    np.testing.assert_allclose(R, [[0.8, 0.2], [0.3, 0.7]])


def test_issue_scores_put_the_planted_row_first():
    labels = np.array([0, 0, 1, 1])
    R = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.1, 0.9]])
    s = issue_scores(labels, R)
    assert s.argmax() == 1 and s.shape == (4,)


def test_detector_finds_and_fixes_planted_errors(planted):
    X, truth, noisy = planted
    det = LabelIssueDetector(k=10, random_state=0).fit(X, noisy, n_classes=4)
    top = set(np.argsort(-det.scores_)[: len(PLANTED)])
    assert top == set(PLANTED)
    assert all(det.suggested_[i] == truth[i] for i in PLANTED)
    # Calibrated on synthetic flips only: the planted rows get the highest posteriors,
    # most are flagged, and clean rows are not.
    assert set(np.argsort(-det.posterior_)[:4]) == set(PLANTED)
    assert det.flagged_[list(PLANTED)].sum() >= 3
    assert not det.flagged_[np.setdiff1d(np.arange(len(noisy)), PLANTED)].any()
    assert 0 < det.estimated_precision_ <= 1
    assert np.all((det.posterior_ >= 0) & (det.posterior_ <= 1))


def test_detector_calibrates_on_a_subset_of_large_inputs(planted, monkeypatch):
    X, truth, noisy = planted
    sizes = []
    real = LabelIssueDetector._members

    def spy(self, X, labels, *args):
        sizes.append(len(labels))
        return real(self, X, labels, *args)

    monkeypatch.setattr(LabelIssueDetector, "_members", spy)
    cap = len(noisy) // 2
    det = LabelIssueDetector(k=10, random_state=0, max_calibration_rows=cap).fit(X, noisy, n_classes=4)
    assert sizes == [len(noisy), cap, cap]  # the scoring pass sees every row, the synthetic rounds a subset
    assert set(np.argsort(-det.scores_)[: len(PLANTED)]) == set(PLANTED)
    assert det.flagged_[list(PLANTED)].sum() >= 3


def test_detector_uses_clusters_and_api_when_given(planted):
    X, truth, noisy = planted
    clusters = truth.copy()  # clusters that match the true classes
    api = truth.copy()
    api[0] = -1  # no prediction for one row
    det = LabelIssueDetector(k=10, n_synthetic=1).fit(X, noisy, n_classes=4, cluster_ids=clusters,
                                                      api_labels=api, api_confidence=np.full(len(api), 0.9))
    assert det.cluster_probs_ is not None and det.api_probs_ is not None
    assert set(np.argsort(-det.scores_)[:4]) == set(PLANTED)
    ignored = LabelIssueDetector(k=10, n_synthetic=1, use_api=False).fit(
        X, noisy, n_classes=4, api_labels=api, api_confidence=np.full(len(api), 0.9))
    assert ignored.api_probs_ is None


def test_inject_noise_kinds(planted):
    X, truth, _ = planted
    noisy, mask = inject_noise(truth, rate=0.1, kind="uniform", random_state=1)
    assert mask.sum() == 16 and (noisy[mask] != truth[mask]).all() and (noisy[~mask] == truth[~mask]).all()
    conf = np.array([1, 2, 3, 0])
    noisy, mask = inject_noise(truth, rate=0.05, kind="confusable", confusable=conf, random_state=1)
    assert (noisy[mask] == conf[truth[mask]]).all()
    P = out_of_fold_probabilities(X, truth, n_classes=4)
    noisy, mask = inject_noise(truth, rate=0.1, kind="mixed", pred_probs=P, random_state=2)
    assert (noisy[mask] != truth[mask]).all()
    assert confusable_classes(P, truth).shape == (4,)


def test_prior_shift():
    p = np.array([0.1, 0.5, 0.9])
    np.testing.assert_allclose(prior_shift(p, from_prior=0.2, to_prior=0.2), p)
    lower = prior_shift(p, from_prior=0.2, to_prior=0.02)
    assert (lower < p).all() and (np.diff(lower) > 0).all()


def test_encode_labels():
    np.testing.assert_array_equal(encode_labels(["b", None, "a", "zz"], ["a", "b"]), [1, -1, 0, -1])


@pytest.mark.parametrize("call, match", [
    (lambda: cleanlab_scores([0, 1], [[0.5, 0.5], [0.5, 0.5]], method="nope"), "valid: self_confidence"),
    (lambda: out_of_fold_probabilities(np.ones((3, 2)), ["a", "b", "a"]), "integer class indices"),
    (lambda: out_of_fold_probabilities(np.ones((3, 2)), [0, 1]), "embeddings have 3 rows but labels have 2"),
    (lambda: out_of_fold_probabilities(np.ones((3, 2)), [0, 0, 1]), "class 1 has a single labelled row"),
    (lambda: out_of_fold_probabilities(np.array([[np.nan, 1], [1, 1]]), [0, 1]), "row 0 holds NaN"),
    (lambda: cleanlab_scores([0, 1], [[0.5, 0.2], [0.5, 0.5]]), "row 0 sums to"),
    (lambda: inject_noise([0, 1], rate=0.5, kind="sideways"), "valid: uniform, confusable, mixed"),
    (lambda: inject_noise([0, 1], rate=1.5), r"rate must be in \(0, 1\)"),
    (lambda: inject_noise([0, 1, 0], rate=0.5, kind="confusable"), "needs confusable= or pred_probs="),
    (lambda: knn_label_distribution(None, [0, 1], neighbors=(np.zeros((3, 1), int), np.zeros((3, 1)))),
     "neighbors must be two arrays"),
    (lambda: prior_shift([0.5], from_prior=0, to_prior=0.1), "from_prior must be in"),
    (lambda: LabelIssueDetector(synthetic_rate=0.7).fit(np.eye(4), [0, 0, 1, 1]), "synthetic_rate"),
    (lambda: cluster_label_agreement([0, 1], [1]), "cluster_ids must have shape"),
    (lambda: out_of_fold_probabilities(np.ones((2, 2)), [-1, 0]), r"labels\[0\] is -1"),
])
def test_bad_input_is_a_clear_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()
