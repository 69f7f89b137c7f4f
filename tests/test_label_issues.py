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
    # the count's response is measured on the subset against the subset's own count without flips
    # (from a classifier fitted on the subset: one more fit, outside _members)
    assert len(det.synthetic_counts_) == 2 and all(c["base"] is not None and c["noisy"] is not None
                                                    for c in det.synthetic_counts_)
    from hl_debug.scoring.label_issues import confident_joint_count

    sub = np.sort(np.random.default_rng(0).choice(len(noisy), size=cap, replace=False))
    P_sub = out_of_fold_probabilities(X[sub], noisy[sub], n_classes=4, n_splits=5, random_state=0)
    assert det.synthetic_counts_[0]["base"] == confident_joint_count(noisy[sub], P_sub)
    assert det.count_response_ is not None
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


# -- stacking, the safeguard, honest counts -----------------------------------------------


def _components(n: int = 2000, seed: int = 0):
    """Synthetic rows with planted truth: component 0 separates flips well, 1 weakly, 2 not."""
    rng = np.random.default_rng(seed)
    kinds = np.zeros(n, dtype=int)
    kinds[rng.choice(n, n // 10, replace=False)] = 1
    flipped = kinds > 0
    F = np.column_stack([rng.normal(size=n) + 2.5 * flipped, rng.normal(size=n) + 0.7 * flipped,
                         rng.normal(size=n)])
    return F, kinds, ["good", "weak", "noise"]


class _Backwards:
    """A sabotaged meta model: a logistic regression whose answer is inverted."""

    def __init__(self):
        from sklearn.linear_model import LogisticRegression

        self.lr = LogisticRegression()

    def get_params(self, deep=True):
        return {}

    def fit(self, X, y, sample_weight=None):
        self.lr.fit(X, y, sample_weight=sample_weight)
        self.classes_ = self.lr.classes_
        return self

    def predict_proba(self, X):
        return self.lr.predict_proba(X)[:, ::-1]


def test_stacking_learns_the_combination_and_calibrates():
    from hl_debug.scoring.stacking import StackedScore

    F, kinds, names = _components()
    real, real_kinds, _ = _components(seed=1)
    comb = StackedScore(random_state=0).fit(F, kinds, real, names=names)
    assert comb.choice_ in ("stack", "good")
    assert comb.synthetic_auprc_["good"] > comb.synthetic_auprc_["weak"] > comb.synthetic_auprc_["noise"]
    # The real rows have the same 10% of mistakes: the estimated count is close to it.
    assert abs(comb.posterior_.sum() - (real_kinds > 0).sum()) < 0.2 * (real_kinds > 0).sum()
    assert len(comb.totals_) >= 15 and comb.noise_rate_ == pytest.approx(comb.posterior_.mean())


def test_safeguard_never_ranks_below_the_best_component():
    """A combination worse than its best part on the synthetic rows is never the score."""
    from sklearn.metrics import average_precision_score

    from hl_debug.scoring.stacking import StackedScore

    F, kinds, names = _components()
    comb = StackedScore(meta_model=_Backwards(), random_state=0).fit(F, kinds, F, names=names)
    best = max(comb.synthetic_auprc_[n] for n in names)
    assert comb.synthetic_auprc_["stack"] < best  # the sabotaged stack is worse ...
    assert comb.choice_ == "good"                 # ... so the best component is the score
    chosen = average_precision_score(kinds > 0, comb.scores_)
    assert chosen >= max(average_precision_score(kinds > 0, F[:, j]) for j in range(3))


@pytest.mark.parametrize("meta_model", [None, _Backwards()], ids=["default", "sabotaged"])
def test_detector_ranks_no_worse_than_its_best_component_on_a_planted_case(meta_model):
    """On planted flips among overlapping classes: the chosen score is at least as good as
    every component on the synthetic validation (strictly with a sabotaged stacker; within
    0.005 otherwise, as a component's lead within the synthetic sample's noise keeps the
    stack), and on the planted truth within 0.01 of the best component and above cleanlab's
    self-confidence within the same 0.01."""
    from sklearn.metrics import average_precision_score

    X, truth = blobs(n_per=120, n_classes=6, dim=12, seed=3)
    X = X + np.random.default_rng(3).normal(scale=0.12, size=X.shape).astype(np.float32)
    noisy, flipped = inject_noise(truth, rate=0.06, kind="uniform", n_classes=6, random_state=5)
    det = LabelIssueDetector(k=10, random_state=0, meta_model=meta_model).fit(X, noisy, n_classes=6)
    syn = det.combination_.synthetic_auprc_
    slack = 0.0 if meta_model is not None else 0.005
    assert syn[det.combination_.choice_] >= max(syn[n] for n in det.component_names_) - slack
    ours = average_precision_score(flipped, det.scores_)
    parts = {n: average_precision_score(flipped, det.components_[:, j]) for j, n in enumerate(det.component_names_)}
    assert ours >= max(parts.values()) - 0.01, (ours, parts)
    assert ours >= average_precision_score(flipped, -cleanlab_scores(noisy, det.pred_probs_)) - 0.01


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_the_default_stack_is_never_below_self_confidence_on_planted_flips(seed):
    """Issue 17.4 in small: on planted uniform flips, where cleanlab's self-confidence is
    already nearly exact, the default combination ranks them at least as well (no slack) and
    within 0.002 of every component. The unshrunk stack failed this on seeds 4 and 5
    (0.941 vs 0.945, 0.946 vs 0.952): weights learnt from a few dozen synthetic flips."""
    from sklearn.metrics import average_precision_score

    X, truth = blobs(n_per=120, n_classes=6, dim=12, seed=seed)
    X = X + np.random.default_rng(seed).normal(scale=0.12, size=X.shape).astype(np.float32)
    noisy, flipped = inject_noise(truth, rate=0.06, kind="uniform", n_classes=6, random_state=seed + 2)
    det = LabelIssueDetector(k=10, random_state=0).fit(X, noisy, n_classes=6)
    ours = average_precision_score(flipped, det.scores_)
    assert det.combination_.choice_ == "stack"
    assert ours >= average_precision_score(flipped, -cleanlab_scores(noisy, det.pred_probs_))
    parts = {n: average_precision_score(flipped, det.components_[:, j]) for j, n in enumerate(det.component_names_)}
    assert ours >= max(parts.values()) - 0.002, (ours, parts)


def _two_kinds(n: int = 3000, seed: int = 0, lead: float = 0.0):
    """Synthetic rows with two kinds of flips (1, 2). "stackish" separates both kinds;
    "kind1" separates kind 1 better than it and kind 2 worse; "lead" is "stackish" plus
    ``lead`` more separation on every kind."""
    rng = np.random.default_rng(seed)
    kinds = np.zeros(n, dtype=int)
    picked = rng.choice(n, n // 5, replace=False)
    kinds[picked[: n // 10]], kinds[picked[n // 10:]] = 1, 2
    base = rng.normal(size=n)
    shift = np.where(kinds > 0, 1.5, 0.0)
    stackish = base + shift
    kind1 = rng.normal(size=n) + np.where(kinds == 1, 3.0, np.where(kinds == 2, 0.5, 0.0))
    return kinds, {"stack": stackish, "kind1": kind1, "lead": stackish + lead * (kinds > 0)}


def test_robust_choice_keeps_the_stack_unless_a_component_wins_every_kind_clearly():
    from hl_debug.scoring.stacking import robust_choice

    kinds, cands = _two_kinds()
    w = np.ones(len(kinds))
    # "kind1" wins kind 1 by far but loses kind 2; a lead of 0 is a tie: the stack stays.
    choice, by_kind = robust_choice({n: cands[n] for n in ("stack", "kind1")}, kinds, w)
    assert by_kind[1]["kind1"] > by_kind[1]["stack"] and by_kind[2]["kind1"] < by_kind[2]["stack"]
    assert choice == "stack"
    # A twin of the stack's quality, ahead on every kind by chance (by 0.009 and 0.007), does
    # not replace it ...
    rng = np.random.default_rng(0)
    n = 3000
    kinds = np.zeros(n, dtype=int)
    picked = rng.choice(n, n // 5, replace=False)
    kinds[picked[: n // 10]], kinds[picked[n // 10:]] = 1, 2
    base = rng.normal(size=n) + np.where(kinds > 0, 1.5, 0.0)
    twins = {"stack": base + 0.5 * rng.normal(size=n), "twin": base + 0.5 * rng.normal(size=n)}
    choice, by_kind = robust_choice(twins, kinds, np.ones(n))
    assert all(a["twin"] > a["stack"] + 0.005 for a in by_kind.values()) and choice == "stack"
    # ... a component clearly ahead on every kind does.
    kinds, cands = _two_kinds(lead=1.0)
    assert robust_choice(cands, kinds, w)[0] == "lead"


def test_detector_never_ranks_below_cleanlab_self_confidence_when_the_stack_is_sabotaged():
    """cleanlab's self-confidence is a candidate: the ``self_confidence`` component ranks the
    rows exactly as it does, and with a sabotaged stacker the chosen score is at least as good
    as it on every kind of synthetic flip and on the planted truth."""
    from scipy.stats import spearmanr
    from sklearn.metrics import average_precision_score

    X, truth = blobs(n_per=120, n_classes=6, dim=12, seed=3)
    X = X + np.random.default_rng(3).normal(scale=0.12, size=X.shape).astype(np.float32)
    noisy, flipped = inject_noise(truth, rate=0.06, kind="uniform", n_classes=6, random_state=5)
    det = LabelIssueDetector(k=10, random_state=0, meta_model=_Backwards()).fit(X, noisy, n_classes=6)
    j = det.component_names_.index("self_confidence")
    cl = -cleanlab_scores(noisy, det.pred_probs_)
    assert spearmanr(det.components_[:, j], cl).statistic == pytest.approx(1.0)
    comb = det.combination_
    assert comb.choice_ != "stack"
    for by_name in comb.synthetic_auprc_by_kind_.values():
        assert by_name[comb.choice_] >= by_name["self_confidence"]
    assert average_precision_score(flipped, det.scores_) >= average_precision_score(flipped, cl) - 0.01


def test_detector_counts_are_honest_on_a_planted_case():
    X, truth = blobs(n_per=120, n_classes=6, dim=12, seed=4)
    noisy, flipped = inject_noise(truth, rate=0.08, kind="uniform", n_classes=6, random_state=6)
    det = LabelIssueDetector(k=10, random_state=0).fit(X, noisy, n_classes=6)
    n_true = flipped.sum()
    assert abs(det.estimated_errors_ - n_true) <= 0.25 * n_true
    assert det.estimated_errors_low_ <= det.estimated_errors_ <= det.estimated_errors_high_
    real_precision = flipped[det.flagged_].mean()
    real_recall = flipped[det.flagged_].sum() / n_true
    assert abs(det.estimated_precision_ - real_precision) <= 0.2
    assert abs(det.estimated_recall_ - real_recall) <= 0.2
    # A target precision flags fewer, surer rows.
    strict = LabelIssueDetector(k=10, random_state=0, target_precision=0.99).fit(X, noisy, n_classes=6)
    assert strict.flagged_.sum() <= det.flagged_.sum() and strict.estimated_precision_ >= 0.99


def test_blend_is_the_previous_detector():
    X, truth, noisy = blobs()[0], *blobs()[1:], None
    noisy = truth.copy()
    for i in PLANTED:
        noisy[i] = (truth[i] + 1) % 4
    det = LabelIssueDetector(k=10, combine="blend").fit(X, noisy, n_classes=4)
    np.testing.assert_allclose(det.scores_, issue_scores(noisy, det.distribution_))
    assert det.combination_ is None and det.threshold_ == 0.5
    with pytest.raises(ValueError, match="valid: stack, blend"):
        LabelIssueDetector(combine="mean").fit(X, noisy)


def test_em_prior_recovers_the_rate_of_calibrated_posteriors():
    from hl_debug.scoring.error_estimate import em_prior, prior_shift

    rng = np.random.default_rng(0)
    wrong = rng.random(20_000) < 0.03
    # Posteriors of a calibrated model trained where half the rows were wrong.
    score = rng.normal(size=len(wrong)) + 2.0 * wrong
    lr = np.exp(2.0 * score - 2.0)  # likelihood ratio N(2,1) / N(0,1)
    post_half = lr / (1 + lr)
    rate = em_prior(post_half, from_prior=0.5)
    assert rate == pytest.approx(wrong.mean(), rel=0.15)
    shifted = prior_shift(post_half, from_prior=0.5, to_prior=rate)
    assert shifted.sum() == pytest.approx(wrong.sum(), rel=0.15)


def test_flag_threshold_maximises_expected_f1_or_meets_the_target():
    from hl_debug.scoring.error_estimate import error_interval, flag_summary, flag_threshold

    p = np.array([0.95, 0.9, 0.8, 0.6, 0.4, 0.3, 0.1, 0.05, 0.02, 0.01])
    t = flag_threshold(p)

    def expected_f1(th):
        f = p >= th
        return 2 * p[f].sum() / (f.sum() + p.sum())

    assert expected_f1(t) == pytest.approx(max(expected_f1(th) for th in p))
    t90 = flag_threshold(p, target_precision=0.9)
    assert (p >= t90).sum() == 2 and p[p >= t90].mean() >= 0.9  # 0.95, 0.9; with 0.8 the mean is 0.88
    assert flag_threshold(p, target_precision=1.0) > p.max()  # nothing reaches it: nothing flagged
    s = flag_summary(p, p >= t)
    assert s["estimated_errors"] == pytest.approx(p.sum()) and s["n_flagged"] == int((p >= t).sum())
    assert s["estimated_recall"] == pytest.approx(p[p >= t].sum() / p.sum())
    low, high = error_interval(p)
    assert low < p.sum() < high
    wide = error_interval(p, [3.0, 5.0, 4.0, 6.0])
    assert wide[0] < low and wide[1] > high
    # A systematic calibration error of 20% widens each side by 20% of the count.
    biased = error_interval(p, relative_bias=0.2)
    assert biased[0] == pytest.approx(low - 0.2 * p.sum()) and biased[1] == pytest.approx(high + 0.2 * p.sum())


def test_noise_transition_follows_the_confusions(planted):
    from hl_debug.scoring.label_issues import noise_transition

    X, truth, noisy = planted
    P = np.full((len(truth), 4), 0.02)
    P[np.arange(len(truth)), truth] = 0.94
    confused = np.flatnonzero(truth == 0)[:10]
    P[confused] = [0.02, 0.02, 0.94, 0.02]  # class 0 rows the model takes for class 2
    T = noise_transition(truth, P, n_classes=4, uniform=0.2)
    np.testing.assert_allclose(T.sum(axis=1), 1.0)
    assert (np.diag(T) == 0).all()
    assert T[0].argmax() == 2 or T[2].argmax() == 0
    noisy, mask = inject_noise(truth, rate=0.2, kind="transition", transition=T, random_state=0)
    assert mask.any() and (noisy[mask] != truth[mask]).all()


# -- the signal: its report, the model report's label_issues, the CLI and the pages -------


@pytest.fixture
def signal_store(store, write_export):
    from tests.test_signals import fill_signal_store

    return fill_signal_store(store, write_export)


def test_signal_reports_estimated_errors_precision_and_recall(signal_store, db_path):
    import json

    from click.testing import CliRunner

    from hl_debug.cli import cli
    from hl_debug.signals.label_issues import SUMMARY_KEYS
    from hl_debug.steps.signals import signals

    signals(signal_store, progress=False)
    summary = signal_store.report("label_issues")
    assert summary["estimated_errors_low"] <= summary["estimated_errors"] <= summary["estimated_errors_high"]
    assert summary["n_flagged"] >= 1 and 0 < summary["estimated_precision"] <= 1
    assert 0 < summary["estimated_recall"] <= 1 and summary["target_precision"] is None
    # the count is the confident joint's over its response to the synthetic flips, both reported
    assert summary["confident_joint_count"] is not None and summary["count_response"] is not None
    assert summary["estimated_errors"] == pytest.approx(
        round(summary["confident_joint_count"] / summary["count_response"]), abs=1e-3)
    # The model report carries the same figures, so `export report` shows them.
    r = CliRunner().invoke(cli, ["--db", str(db_path), "export", "report", "--format", "json"], obj={})
    assert r.exit_code == 0, r.output
    body = json.loads(r.output)
    assert {k: body["label_issues"][k] for k in SUMMARY_KEYS} == {k: summary[k] for k in SUMMARY_KEYS}
    # plus the errors remaining after the review so far (none yet: every scored row counts)
    assert body["label_issues"]["errors_remaining"] == pytest.approx(summary["estimated_errors"])
    assert body["label_issues"]["n_reviewed"] == 0
    r = CliRunner().invoke(cli, ["--db", str(db_path), "report"], obj={})
    assert "estimated label errors" in r.output and "recall" in r.output
    # --target-precision overrides the best-F1 flags.
    r = CliRunner().invoke(cli, ["--db", str(db_path), "signals", "--force", "--target-precision", "0.999"], obj={})
    assert r.exit_code == 0, r.output
    strict = signal_store.report("label_issues")
    assert strict["target_precision"] == 0.999 and strict["n_flagged"] <= summary["n_flagged"]
    assert strict["n_flagged"] == 0 or strict["estimated_precision"] >= 0.999
    r = CliRunner().invoke(cli, ["--db", str(db_path), "signals", "--force", "--target-precision", "1.5"], obj={})
    assert r.exit_code != 0 and "1.5" in r.output


def test_issues_and_report_pages_show_the_estimates(signal_store, db_path):
    from hl_debug.steps.signals import signals
    from webapp import create_app

    signals(signal_store, progress=False)
    summary = signal_store.report("label_issues")
    client = create_app({"DB": str(db_path), "TESTING": True}).test_client()
    figure = f"<b>{summary['estimated_errors']:.0f}</b>"
    for page in ("/issues", "/report"):
        html = client.get(page).get_data(as_text=True)
        assert 'id="label-issue-figures"' in html and figure in html, page
        assert f"{summary['n_flagged']} flagged</a>" in html and "estimated recall" in html, page


def test_grouped_noise_flips_neighbours_together(planted):
    from hl_debug.neighbors import knn
    from hl_debug.scoring.label_issues import inject_grouped_noise

    X, truth, _ = planted
    T = np.full((4, 4), 1 / 3)
    np.fill_diagonal(T, 0.0)
    noisy, mask = inject_grouped_noise(truth, knn(X, 6), rate=0.1, transition=T, group_size=4, random_state=0)
    assert mask.sum() == 16 and (noisy[mask] != truth[mask]).all() and (noisy[~mask] == truth[~mask]).all()
    # groups: flipped rows come in runs of one class turned into one other class
    pairs = {(t, v) for t, v in zip(truth[mask], noisy[mask])}
    assert len(pairs) <= 4 + 1


# -- tiny and degenerate data: fewer or no flags with a reason, never a traceback (issue 15) --


def test_keep_classes_scorable_reverts_flips_that_make_one_row_classes():
    from hl_debug.scoring.noise import keep_classes_scorable

    y = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    # row 3 leaves class 1 with one row; row 5 is the only row of class 3
    noisy = np.array([0, 0, 0, 0, 1, 3, 2, 2])
    out = keep_classes_scorable(y, noisy)
    assert (np.bincount(out) != 1).all()
    assert out[3] == 1 and out[5] == 2  # both reverted
    ok = np.array([1, 0, 0, 1, 1, 2, 2, 2])  # class 1 gains a row: nothing to revert
    assert (keep_classes_scorable(y, ok) == ok).all()
    assert (keep_classes_scorable(y, y) == y).all()


def _tiny_vectors(labels, seed, dim=8):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(labels) + 1, dim))
    X = centres[labels] + 0.3 * rng.normal(size=(len(labels), dim))
    return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("seed", range(6))
def test_detector_survives_two_row_and_absent_classes(seed):
    # class 2 has two rows (a synthetic flip would leave one), class 3 has none among the
    # scored rows (a uniform flip into it would make a one-row class): both crashed the fit
    labels = np.array([0] * 8 + [1] * 8 + [2] * 2)
    det = LabelIssueDetector(random_state=seed).fit(_tiny_vectors(labels, seed), labels, n_classes=4)
    assert det.posterior_.shape == (18,) and np.isfinite(det.posterior_).all()
    assert det.flagged_.sum() < 18


def _signal_context(labels, seed=0):
    from hl_debug.neighbors import KnnMemo
    from hl_debug.signals.context import SignalContext

    names = sorted({v for v in labels if v})
    codes = [names.index(v) if v else len(names) for v in labels]
    n = len(labels)
    return SignalContext(ids=np.arange(n), texts=[f"t{i}" for i in range(n)], vectors=_tiny_vectors(codes, seed),
                         labels=labels, splits=["training"] * n, cluster_ids=None, predictions={}, api_endpoint=None,
                         active_endpoint=None, knn_memo=KnnMemo())


@pytest.mark.parametrize("seed", range(4))
def test_signal_on_an_intent_with_one_annotated_row(seed):
    from hl_debug.signals.registry import get_signal

    labels = ["a"] * 8 + ["b"] * 8 + ["c"]  # "c" is not scored; it used to be a flip target
    result = get_signal("issues")(random_state=seed).find(_signal_context(labels, seed))
    assert result.counts["n_issues_scored"] == 16
    assert result.report["not_scored_single_row_intents"] == ["c"] and result.report["not_scored_reason"] is None


def test_signal_on_a_12_row_export_degrades_with_a_reason(caplog):
    from hl_debug.signals.registry import get_signal

    sig = get_signal("issues")()
    # 4+4+2 rows and a one-row intent: scored (the two-row intent keeps its rows)
    result = sig.find(_signal_context(["a"] * 4 + ["b"] * 4 + ["c"] * 2 + ["d"] + [None]))
    assert result.counts["n_issues_scored"] == 10 and result.counts["n_flagged"] < 10
    # six two-row intents: no flip leaves every intent two rows, so nothing is scored, said why
    result = sig.find(_signal_context([x for x in "abcdef" for _ in range(2)]))
    assert result.rows == [] and result.counts == {"n_issues_scored": 0, "n_flagged": 0}
    assert "too few labelled rows" in result.report["not_scored_reason"]
    assert "too few labelled rows" in caplog.text
    assert "not scored: too few labelled rows" in sig.summary(result.counts, result.report)


def test_pipeline_signals_on_a_12_row_export(store, write_export):
    import json

    from hl_debug.steps.embed import embed
    from hl_debug.steps.ingest import ingest
    from hl_debug.steps.signals import signals
    from tests.fakes import FakeEncoder

    words = {"a": "card lost stolen", "b": "bill invoice due", "c": "rate euro dollar", "d": "hello there"}
    labels = ["a"] * 4 + ["b"] * 4 + ["c"] * 2 + ["d", ""]
    records = [{"id": 100 + i, "project_id": 1, "complete": bool(lab), "usage": "training", "score": 0.0,
                "data": json.dumps({"text": f"{words[lab or 'd']} {i}", "intent": lab})}
               for i, lab in enumerate(labels)]
    ingest(store, write_export(records))
    embed(store, FakeEncoder(), progress=False)
    counts = signals(store, progress=False)
    assert store.report("label_issues")["n_scored"] == 10, counts


# -- the count: anchored to the confident joint (issue 17.5) ------------------------------


def test_shift_to_total_keeps_the_order_and_hits_the_total():
    from hl_debug.scoring.error_estimate import shift_to_total

    p = np.array([0.9, 0.6, 0.3, 0.05, 0.01])
    for total in (0.5, 1.0, 3.0):
        q = shift_to_total(p, total)
        assert q.sum() == pytest.approx(total, abs=1e-6)
        assert (np.argsort(-q) == np.argsort(-p)).all()
    with pytest.raises(ValueError, match="total"):
        shift_to_total(p, 5.0)


def test_confident_joint_count_counts_the_off_diagonal():
    from hl_debug.scoring.label_issues import confident_joint_count

    labels = np.array([0] * 10 + [1] * 10)
    P = np.tile([0.9, 0.1], (20, 1))
    P[10:] = [0.1, 0.9]
    assert confident_joint_count(labels, P) == 0
    P[[0, 1, 12]] = P[[0, 1, 12], ::-1]  # three rows whose classifier says the other class
    assert confident_joint_count(labels, P) == 3
    # classes absent from the labels are left out, not divided by zero
    assert confident_joint_count(labels, np.column_stack([P, np.zeros(20)])) == 3


def test_the_count_is_anchored_to_the_confident_joint_and_the_ranking_is_unchanged(planted):
    X, truth, noisy = planted
    anchored = LabelIssueDetector(random_state=0, count="confident_joint").fit(X, noisy)
    em = LabelIssueDetector(random_state=0, count="em").fit(X, noisy)
    assert anchored.confident_joint_count_ is not None and anchored.confident_joint_count_ > 0
    assert anchored.estimated_errors_ == pytest.approx(anchored.confident_joint_count_, abs=1e-4)
    assert em.estimated_errors_ == pytest.approx(em.em_estimated_errors_)
    assert anchored.em_estimated_errors_ == pytest.approx(em.estimated_errors_)
    assert (anchored.scores_ == em.scores_).all()  # the ranking (AUPRC, the queue) does not move
    assert anchored.estimated_errors_low_ <= anchored.estimated_errors_ <= anchored.estimated_errors_high_
    with pytest.raises(ValueError, match="unknown count"):
        LabelIssueDetector(count="nope").fit(X, noisy)


# -- the count: the confident joint divided by its response to planted flips (issue 17.5) ---


def test_replica_count_divides_by_the_response_weighted_by_the_estimated_mix():
    from types import SimpleNamespace

    det = LabelIssueDetector()
    det.synthetic_counts_ = [{"kind": "uniform", "code": 2, "flipped": 100, "base": 10, "noisy": 90},
                             {"kind": "transition", "code": 1, "flipped": 100, "base": 10, "noisy": 50},
                             {"kind": "transition", "code": 1, "flipped": 0, "base": 10, "noisy": 10}]
    # the data is estimated to hold only uniform-like mistakes: the uniform round's response (0.8) counts
    comb = SimpleNamespace(kinds_=np.array([0, 1, 2]), priors_=np.array([0.9, 0.0, 0.1]))
    count, spread = det._replica_count(40, comb)
    assert det.count_responses_ == [0.8, 0.4] and det.count_response_ == pytest.approx(0.8)
    assert count == 50 and spread == pytest.approx(0.2 / 0.8)
    # an even mix: the mean response
    comb.priors_ = np.array([0.9, 0.05, 0.05])
    assert det._replica_count(60, comb)[0] == 100
    # no usable round: the count is kept
    det.synthetic_counts_ = [{"kind": "uniform", "code": 1, "flipped": 10, "base": None, "noisy": None}]
    assert det._replica_count(60, comb) == (60, 0.0) and det.count_response_ is None


def test_replica_count_corrects_the_confident_joints_undercount_on_a_planted_case():
    """Classes that overlap: the confident joint finds only part of the planted flips; the
    replica count (its count over its response to the synthetic flips) is nearer the truth,
    and the posteriors sum to it."""
    X, truth = blobs(n_per=120, n_classes=6, dim=12, seed=3)
    X = X + np.random.default_rng(3).normal(scale=0.12, size=X.shape).astype(np.float32)
    noisy, flipped = inject_noise(truth, rate=0.1, kind="uniform", n_classes=6, random_state=5)
    det = LabelIssueDetector(k=10, random_state=0).fit(X, noisy, n_classes=6)
    n_true = int(flipped.sum())
    assert det.count_response_ is not None and 0.2 <= det.count_response_ < 1.0
    assert det.estimated_errors_ == pytest.approx(round(det.confident_joint_count_ / det.count_response_), abs=1e-3)
    assert abs(det.estimated_errors_ - n_true) < abs(det.confident_joint_count_ - n_true)
    assert abs(det.estimated_errors_ - n_true) <= 0.2 * n_true
    assert det.estimated_errors_low_ <= n_true <= det.estimated_errors_high_
