"""Pure cluster statistics and rankings (hl_debug.scoring.clusters) on small hand-made inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hl_debug.scoring import clusters as cl

# Three clusters and two noise rows:
#   0: 4 card_issue + 1 bill_question (the suspect, id 14) - impure
#   1: 3 bill_question, pure
#   2: 1 card_issue + 3 unannotated - an unannotated region
CLUSTER_IDS = np.array([0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, -1, -1])
INTENTS = ["card_issue"] * 4 + ["bill_question"] + ["bill_question"] * 3 + ["card_issue", None, None, None] + [None, "card_issue"]
USAGES = ["training", "training", "validation", "testing", "training", "training", "training", "testing",
          "training", None, None, None, None, "training"]
IDS = np.arange(10, 24)
TEXTS = ["card stuck atm", "lost card", "card blocked", "stolen card", "card bill due",
         "water bill due", "gas bill", "phone bill paid",
         "travel abroad card", "travel notice spain", "travel notice france", "going abroad travel",
         "random words here", "card again"]


def test_label_entropy_bits():
    assert cl.label_entropy([5]) == 0.0
    assert cl.label_entropy([]) == 0.0
    assert cl.label_entropy([2, 2]) == pytest.approx(1.0)
    assert cl.label_entropy([1, 1, 1, 1]) == pytest.approx(2.0)
    assert cl.label_entropy([3, 0, 1]) == pytest.approx(-(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25)))


def test_wilson_lower_bound_prefers_more_evidence():
    lb = cl.wilson_lower_bound(np.array([2, 20, 0, 0]), np.array([3, 30, 5, 0]))
    assert lb[1] > lb[0] > 0  # 20/30 beats 2/3 although the share is equal
    assert lb[2] == 0 and lb[3] == 0
    assert np.all(lb <= np.array([2 / 3, 2 / 3, 0, 0]) + 1e-12)
    with pytest.raises(ValueError, match="between 0 and totals"):
        cl.wilson_lower_bound([4], [3])


def test_cluster_stats_counts_purity_entropy_usage():
    xy = np.column_stack([np.arange(14, dtype=float), np.zeros(14)])
    stats = {s["cluster_id"]: s for s in cl.cluster_stats(CLUSTER_IDS, INTENTS, USAGES, points_2d=xy)}
    assert sorted(stats) == [0, 1, 2]  # noise excluded
    s0 = stats[0]
    assert (s0["size"], s0["n_annotated"], s0["n_unannotated"]) == (5, 5, 0)
    assert s0["majority_intent"] == "card_issue" and s0["purity"] == pytest.approx(0.8)
    assert s0["label_entropy"] == pytest.approx(cl.label_entropy([4, 1]))
    assert list(s0["label_counts"].items()) == [("card_issue", 4), ("bill_question", 1)]
    assert s0["usage_counts"] == {"training": 3, "validation": 1, "testing": 1, "none": 0}
    assert s0["x"] == pytest.approx(2.0) and s0["y"] == 0.0
    assert stats[1]["purity"] == 1.0 and stats[1]["label_entropy"] == 0.0
    s2 = stats[2]
    assert s2["unannotated_share"] == pytest.approx(0.75) and s2["usage_counts"]["none"] == 3


def test_cluster_stats_all_unannotated_cluster_has_no_purity():
    stats = cl.cluster_stats([0, 0], [None, ""], [None, None])
    assert stats[0]["purity"] is None and stats[0]["majority_intent"] is None and stats[0]["unannotated_share"] == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"cluster_ids": [0, 1], "intents": ["a"], "usages": ["training"]}, "one entry per utterance"),
        ({"cluster_ids": [0.5], "intents": ["a"], "usages": ["training"]}, "must be integers"),
        ({"cluster_ids": [-2], "intents": ["a"], "usages": ["training"]}, ">= -1"),
        ({"cluster_ids": [0], "intents": ["a"], "usages": ["train"]}, "unknown usage"),
    ],
)
def test_cluster_stats_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        cl.cluster_stats(**kwargs)


def test_keywords_are_distinctive_per_cluster():
    kw = cl.cluster_keywords(TEXTS, CLUSTER_IDS, top_n=3, ngram_range=(1, 1))
    assert set(kw) == {0, 1, 2}
    assert kw[0][0] == "card"
    assert kw[1][0] == "bill"
    assert kw[2][0] == "travel"
    assert all(len(v) <= 3 for v in kw.values())
    # noise gets keywords only when asked
    assert -1 in cl.cluster_keywords(TEXTS, CLUSTER_IDS, include_noise=True)


def test_keywords_deterministic_and_validated():
    assert cl.cluster_keywords(TEXTS, CLUSTER_IDS) == cl.cluster_keywords(TEXTS, CLUSTER_IDS)
    assert cl.cluster_keywords(["the and of", "a the"], [0, 1]) == {0: [], 1: []}  # only stop words
    with pytest.raises(ValueError, match="top_n"):
        cl.cluster_keywords(TEXTS, CLUSTER_IDS, top_n=0)


def test_impurity_ranking_lists_minority_rows_as_suspects():
    stats = cl.cluster_stats(CLUSTER_IDS, INTENTS, USAGES)
    ranked = cl.rank_impure_clusters(stats, CLUSTER_IDS, INTENTS, IDS, min_annotated=3)
    assert [r["cluster_id"] for r in ranked] == [0]  # 1 is pure, 2 has one annotated row
    top = ranked[0]
    assert top["rank"] == 1 and top["n_minority"] == 1 and top["purity"] == pytest.approx(0.8)
    assert [s["id"] for s in top["suspects"]] == [14]
    assert top["suspects"][0]["intent"] == "bill_question"


def test_impurity_ranking_methods_and_order():
    # cluster 0: 2 of 4 minority; cluster 1: 10 of 40 minority
    ids = np.arange(44)
    labels = np.array([0] * 4 + [1] * 40)
    intents = ["a", "a", "b", "c"] + ["x"] * 30 + ["y"] * 10
    stats = cl.cluster_stats(labels, intents, [None] * 44)
    by_share = cl.rank_impure_clusters(stats, labels, intents, ids, method="share", min_annotated=1)
    by_count = cl.rank_impure_clusters(stats, labels, intents, ids, method="count", min_annotated=1)
    assert [r["cluster_id"] for r in by_share] == [0, 1]
    assert [r["cluster_id"] for r in by_count] == [1, 0]
    agreement = np.linspace(0, 1, 44)
    ranked = cl.rank_impure_clusters(stats, labels, intents, ids, min_annotated=1, neighbor_agreement=agreement)
    sus = next(r for r in ranked if r["cluster_id"] == 0)["suspects"]
    assert [s["id"] for s in sus] == [2, 3] and "neighbor_agreement" in sus[0]
    with pytest.raises(ValueError, match="unknown method 'purity'; valid: wilson, share, count"):
        cl.rank_impure_clusters(stats, labels, intents, ids, method="purity")
    with pytest.raises(ValueError, match="min_annotated"):
        cl.rank_impure_clusters(stats, labels, intents, ids, min_annotated=0)


def test_unannotated_regions_include_noise_neighbourhoods():
    nearest = np.where(CLUSTER_IDS == -1, 2, CLUSTER_IDS)
    regions = cl.rank_unannotated_regions(CLUSTER_IDS, INTENTS, IDS, nearest_cluster=nearest, min_unannotated=1)
    assert regions[0]["region"] == "cluster 2" and regions[0]["rank"] == 1
    assert regions[0]["unannotated_ids"] == [19, 20, 21]
    assert regions[0]["enrichment"] == pytest.approx(0.75 / (4 / 14))
    noise = next(r for r in regions if r["cluster_id"] == -1)
    assert noise["region"] == "noise near cluster 2" and noise["unannotated_ids"] == [22]
    # clusters without unannotated rows are not regions
    assert {r["cluster_id"] for r in regions} == {2, -1}
    assert cl.rank_unannotated_regions(CLUSTER_IDS, INTENTS, IDS)[0]["region"] == "cluster 2"
    with pytest.raises(ValueError, match="valid: wilson, share, count"):
        cl.rank_unannotated_regions(CLUSTER_IDS, INTENTS, IDS, method="density")


def test_neighbor_label_agreement():
    intents = ["a", "a", "b", None]
    nb = np.array([[1, 2], [0, 3], [0, 1], [0, 1]])
    agree = cl.neighbor_label_agreement(nb, intents)
    assert agree[0] == pytest.approx(0.5) and agree[1] == 1.0 and agree[2] == 0.0 and np.isnan(agree[3])
    with pytest.raises(ValueError, match="outside"):
        cl.neighbor_label_agreement(np.array([[5], [0], [0], [0]]), intents)


# -- suspects: minority-label rows whose label is also rare around them --------------------


def test_suspects_mark_likely_errors_and_include_the_clusters_noise_neighbours():
    # cluster 0: 6 "a" + 2 "b" rows that agree with their neighbours (an overlapping intent)
    # + 1 "c" slip whose neighbours never say "c"; a noise "d" row beside cluster 0
    cluster_ids = np.array([0] * 9 + [-1])
    intents = ["a"] * 6 + ["b", "b", "c", "d"]
    agreement = np.array([1.0] * 6 + [0.8, 0.6, 0.0, 0.1])
    ids = np.arange(100, 110)
    stats = cl.cluster_stats(cluster_ids, intents, [None] * 10)
    ranked = cl.rank_impure_clusters(stats, cluster_ids, intents, ids, neighbor_agreement=agreement,
                                     nearest_cluster=np.zeros(10, dtype=int))
    top = ranked[0]
    assert top["n_minority"] == 3  # members only, as the impurity score counts them
    # likely errors first, then the rarest label in the cluster ("d": none, "c": one)
    assert [s["id"] for s in top["suspects"]] == [109, 108, 107, 106]
    assert [s["likely_error"] for s in top["suspects"]] == [True, True, False, False]
    assert [s["member"] for s in top["suspects"]] == [False, True, True, True]
    assert top["n_likely_errors"] == 2
    # without nearest_cluster the noise row is nobody's suspect; a stricter threshold drops the 0.1
    plain = cl.rank_impure_clusters(stats, cluster_ids, intents, ids, neighbor_agreement=agreement)[0]
    assert 109 not in {s["id"] for s in plain["suspects"]}
    strict = cl.rank_impure_clusters(stats, cluster_ids, intents, ids, neighbor_agreement=agreement,
                                     nearest_cluster=np.zeros(10, dtype=int), max_agreement=0.05)[0]
    assert [s["id"] for s in strict["suspects"] if s["likely_error"]] == [108]


def test_a_row_without_annotated_neighbours_is_a_likely_error():
    from hl_debug.scoring.suspects import is_likely_error

    assert is_likely_error(float("nan")) and is_likely_error(0.3) and not is_likely_error(0.31)
