"""Out-of-scope scores, candidate groups and new intents: tiny synthetic blobs (one per intent,
plus an unseen one nobody annotated), the signals step and the exports."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from click.testing import CliRunner

from hl_debug.cli import cli
from hl_debug.scoring.new_intents import calibrated_cut, group_candidates, intent_spread
from hl_debug.scoring.oos_evidence import SharedGaussians
from hl_debug.scoring.out_of_scope import OutOfScopeDetector, estimate_share, top_k_known
from hl_debug.signals.context import SignalContext
from hl_debug.signals.out_of_scope import NEW_INTENTS, OOS, NewIntents, OutOfScope
from hl_debug.signals.registry import BUILTINS, all_signals
from hl_debug.steps.signals import signals
from tests.test_signals import fill_signal_store

N_INTENTS, PER, UNANNOTATED = 6, 80, 30  # rows per blob; unannotated rows per in-scope blob


def blobs(seed: int = 0, dim: int = 24, spread: float = 0.45):
    """Unit vectors around N_INTENTS + 1 random centres; the last blob is never annotated."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(N_INTENTS + 1, dim))
    X, labels, truth = [], [], []
    for c in range(N_INTENTS + 1):
        X.append(centres[c] + spread * rng.normal(size=(PER, dim)))
        for j in range(PER):
            truth.append("unseen" if c == N_INTENTS else f"intent{c}")
            labels.append(None if c == N_INTENTS or j < UNANNOTATED else f"intent{c}")
    X = np.vstack(X).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    texts = [f"{t} words {i}" for i, t in enumerate(truth)]
    return SignalContext(ids=np.arange(len(X)) + 1000, texts=texts, vectors=X, labels=labels,
                         splits=[None] * len(X)), np.array(truth)


@pytest.fixture(scope="module")
def found():
    context, truth = blobs()
    result = OutOfScope().find(context)
    context.results["oos"] = result
    return context, truth, result


def test_the_unseen_blob_scores_highest(found):
    context, truth, result = found
    score = np.array([r["oos_score"] for r in result.records()])
    unseen = truth == "unseen"
    assert score[unseen].min() > np.quantile(score[~unseen], 0.95)
    assert np.median(score[unseen]) > score[~unseen].max() - 1e-9 or np.mean(score[unseen] > score[~unseen].max()) > 0.9
    ranks = {r["id"]: r["rank"] for r in result.records()}
    assert sorted(ranks.values()) == list(range(1, len(truth) + 1))
    top = [r for r in result.records() if r["rank"] <= unseen.sum()]
    assert np.mean(truth[[int(r["id"]) - 1000 for r in top]] == "unseen") >= 0.95


def test_the_unseen_blob_forms_one_group(found):
    context, truth, result = found
    unseen = truth == "unseen"
    group = np.array([r["group_id"] if r["group_id"] is not None else 0 for r in result.records()])
    cand = np.array([r["is_candidate"] for r in result.records()], dtype=bool)
    assert cand[unseen].mean() >= 0.95
    assert len(set(group[unseen & cand])) == 1 and group[unseen & cand][0] > 0
    assert np.sum(group == group[unseen][0]) - np.sum(unseen & cand) <= 2  # hardly any in-scope row in it
    assert all(g is None for g, c in zip(group, cand) if not c) or np.all(group[~cand] == 0)
    rows = NewIntents().find(context).rows
    first = next(r for r in rows if r["group_id"] == group[unseen][0])
    assert first["size"] == np.sum(group == group[unseen][0]) and first["verdict"] == "new intent"
    assert "unseen" in first["keywords"].split(", ")
    assert set(json.loads(first["ids"])) >= {int(i) for i in context.ids[unseen & cand]}
    assert first["examples"].count(" | ") == 2 and all("unseen" in e for e in first["examples"].split(" | "))
    assert first["nearest_intents"].startswith("intent") and "(" in first["nearest_intents"]


def test_the_false_positive_rate_estimate_matches_the_in_scope_flag_rate(found):
    context, truth, result = found
    rows, report = result.records(), result.report
    inscope_unannotated = (truth != "unseen") & ~context.annotated
    cand = np.array([r["is_candidate"] for r in rows], dtype=bool)
    measured = cand[inscope_unannotated].mean()
    assert report["target_fpr"] == 0.05 and report["fpr_at_threshold"] <= 0.05
    assert abs(measured - report["fpr_at_threshold"]) < 0.05
    fpr = np.array([r["fpr"] for r in rows])
    score = np.array([r["oos_score"] for r in rows])
    order = np.argsort(score)
    assert np.all(np.diff(fpr[order]) <= 1e-12)  # a higher score never has a higher estimated FPR
    assert set(cand) == {True, False} and np.all(score[cand] >= report["threshold"])
    assert np.all(fpr[cand] <= report["target_fpr"] + 1e-9)


def test_the_share_estimate_brackets_the_truth(found):
    context, truth, result = found
    report = result.report
    true_share = np.mean(truth[~context.annotated] == "unseen")
    assert report["estimated_share_low"] <= true_share <= report["estimated_share_high"]
    assert abs(report["estimated_share"] - true_share) < 0.1
    assert report["n_unannotated"] == int((~context.annotated).sum()) and report["n_groups"] >= 1
    assert report["n_candidates_unannotated"] <= report["n_candidates"]


def test_estimate_share_corrects_for_false_positives_and_recall():
    rng = np.random.default_rng(0)
    cal_in = rng.random(1000)  # threshold 0.9: 10% of in-scope rows above it
    cal_out = np.r_[np.full(400, 0.95), np.full(100, 0.5)]  # 80% recall
    groups = np.repeat(np.arange(10), 50)
    candidate = np.r_[np.ones(420, bool), np.zeros(580, bool)]  # p = 0.42 = 0.4 * 0.8 + 0.6 * 0.1... of 1000
    share, low, high = estimate_share(candidate, tpr=0.8, fpr=0.1, cal_in=cal_in, cal_out=cal_out, cal_out_groups=groups,
                                      threshold=0.9)
    assert share == pytest.approx((0.42 - 0.1) / 0.7)
    assert low < share < high
    assert np.isnan(estimate_share(candidate, tpr=0.1, fpr=0.1, cal_in=cal_in, cal_out=cal_out,
                                   cal_out_groups=groups, threshold=0.9)[0])


def test_top_k_known_reads_the_graph_and_falls_back_to_exact_search():
    from hl_debug.neighbors import knn

    context, _ = blobs(dim=16)
    X = context.vectors
    known = np.zeros(len(X), dtype=bool)
    known[::3] = True
    queries = np.arange(0, len(X), 7)
    exact = top_k_known(X, queries, known, 5)
    via_graph = top_k_known(X, queries, known, 5, graph=knn(X, 8))  # too narrow for many: exact for those
    for a, b in zip(exact, via_graph):
        np.testing.assert_allclose(a, b, rtol=1e-5)
    S = X[queries] @ X[known].T
    S[np.isin(queries, np.flatnonzero(known)), np.searchsorted(np.flatnonzero(known), queries[known[queries]])] = -9
    np.testing.assert_allclose(exact[1], S.max(axis=1), rtol=1e-5)


def test_a_calibration_fold_forgets_its_held_out_intents():
    """The Mahalanobis model of a fold equals one built as if the held-out rows were unannotated
    (the background Gaussian must not cover them: that leaked them before)."""
    context, _ = blobs(dim=12)
    y = context.y
    full = SharedGaussians(context.vectors, y)
    keep = np.array([0, 2, 3, 5])
    y_without = np.where(np.isin(y, keep), y, -1)
    fresh = SharedGaussians(context.vectors, y_without)
    fresh.alpha, fresh.alpha0 = full.alpha, full.alpha0
    queries = np.flatnonzero(y == 1)
    for a, b in zip(full.distances(queries, keep), fresh.distances(queries, keep)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8)


def test_groups_split_where_intents_do():
    context, truth = blobs()
    X = context.vectors
    threshold = intent_spread(X, context.y)
    rows = np.flatnonzero(np.isin(truth, ["intent0", "intent1"]))
    groups = group_candidates(X[rows], threshold=threshold, min_size=3)
    for name in ("intent0", "intent1"):
        values, counts = np.unique(groups[truth[rows] == name], return_counts=True)
        assert counts.max() >= 0.9 * counts.sum() and values[np.argmax(counts)] >= 0
    assert group_candidates(X[:2], threshold=threshold, min_size=3).tolist() == [-1, -1]


def test_detector_needs_two_intents_and_the_signal_says_so():
    with pytest.raises(ValueError, match="two annotated intents"):
        OutOfScopeDetector().fit(np.eye(4, dtype=np.float32), np.array([0, 0, -1, -1]))
    X = np.eye(4, dtype=np.float32)
    context = SignalContext(ids=np.arange(4), texts=list("abcd"), vectors=X, labels=["a", "a", None, None],
                            splits=[None] * 4)
    result = OutOfScope().find(context)
    assert result.records() == [] and result.report["n_candidates"] == 0 and "skipped" in result.report


def test_the_signals_step_runs_both_and_the_exports_have_their_columns(store, write_export, tmp_path):
    assert BUILTINS.index("out_of_scope") == BUILTINS.index("label_issues") + 1
    names = [cls.name for cls in all_signals()]
    assert names.index("oos") < names.index("new_intents") < names.index("queue")
    fill_signal_store(store, write_export)
    counts = signals(store, progress=False)
    assert "n_oos_candidates" in counts and "n_new_intents" in counts
    assert store.table_count(OOS) == store.stats()["n_utterances"]
    stored = store.table_rows(OOS)  # written from columns: ints stay ints, "no group" is NULL
    assert all(type(r["group_id"]) is int and r["group_id"] >= 1 and r["is_candidate"] == 1
               for r in stored if r["group_id"] is not None)
    assert all(type(r[c]) is int for r in stored for c in ("id", "rank", "annotated", "is_candidate"))
    assert all(r["reason"].startswith("fits no intent" if r["is_candidate"] else "in scope") for r in stored)
    assert sorted(r["rank"] for r in stored) == list(range(1, len(stored) + 1))
    assert store.report("out_of_scope")["target_fpr"] == 0.05
    runner = CliRunner()
    r = runner.invoke(cli, ["--db", str(store.path), "export", "oos", "--format", "csv"], obj={})
    assert r.exit_code == 0, r.output
    table = list(csv.DictReader(io.StringIO(r.output)))
    assert {"id", "text", "annotated", "oos_score", "is_candidate", "group_id"} <= set(table[0])
    assert all((row["group_id"] == "") == (row["is_candidate"] == "0") or row["is_candidate"] == "1" for row in table)
    scores = [float(row["oos_score"]) for row in table]
    assert scores == sorted(scores, reverse=True)
    for name in ("new-intents", "new_intents"):
        r = runner.invoke(cli, ["--db", str(store.path), "export", name, "--format", "csv"], obj={})
        assert r.exit_code == 0, r.output
        assert r.output.splitlines()[0] == "group_id,size,keywords,nearest_intents,examples,verdict"
    assert store.table_count(NEW_INTENTS) == len(r.output.splitlines()) - 1


def test_the_result_is_columns_in_context_order_and_its_reasons_are_worded_on_demand(found):
    context, _, result = found
    assert result.rows == [] and set(result.columns) == set(OOS.column_names)
    records = result.records()
    assert [r["id"] for r in records] == [int(i) for i in context.ids]
    reasons = result.columns["reason"]
    assert not isinstance(reasons, list) and len(reasons) == len(context)
    assert reasons[3:9] == [reasons[i] for i in range(3, 9)] == [r["reason"] for r in records[3:9]]
    assert reasons[-1] == records[-1]["reason"] and list(reasons) == [r["reason"] for r in records]
    with pytest.raises(IndexError):
        reasons[len(context)]


def test_the_inspector_gets_the_score_and_group():
    assert OutOfScope.evidence.columns == {"oos_score": "oos_score", "oos_group": "group_id"}
    assert OutOfScope.defaults["oos_target_fpr"].default == 0.05


def test_the_registry_runs_oos_before_the_queue_whatever_was_imported_first():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    code = ("import hl_debug.signals.queue, hl_debug.signals.model_report\n"
            "from hl_debug.signals.registry import all_signals\n"
            "print(' '.join(c.name for c in all_signals()))")
    out = subprocess.run([sys.executable, "-c", code], cwd=root, env={"PYTHONPATH": str(root)}, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["issues", "oos", "new_intents", "duplicates", "queue", "taxonomy", "report"]


def test_every_row_carries_its_evidence(found):
    _, truth, result = found
    for r in result.records():
        assert all(r[c] is not None for c in ("knn_similarity", "mahalanobis", "max_probability", "unannotated_share",
                                              "nearest_intent", "nearest_similarity"))
        assert 0 <= r["max_probability"] <= 1 and 0 <= r["unannotated_share"] <= 1 and r["reason"]
    unseen = [r for r, t in zip(result.records(), truth) if t == "unseen"]
    assert all(r["reason"].startswith("fits no intent") for r in unseen if r["is_candidate"])


def paired_intents(seed: int = 0, *, separation: float = 1.3, unseen_pairs: int = 0, pairs: int = 8,
                   per: int = 60, annotated: int = 20, dim: int = 48, sd: float = 0.3):
    """Intents in pairs of neighbours: pair ``p`` sits on axis ``2p`` (norm 4), its second
    intent moved ``separation`` along axis ``2p + 1``; the last ``unseen_pairs`` pairs are
    never annotated (truth ``unseen<p>.<0|1>``), the others have ``annotated`` of ``per`` rows."""
    rng = np.random.default_rng(seed)
    X, y, truth = [], [], []
    for p in range(pairs + unseen_pairs):
        unseen = p >= pairs
        for j in range(2):
            centre = np.zeros(dim)
            centre[2 * p] = 4.0
            centre[2 * p + 1] = separation * j
            X.append(centre + sd * rng.normal(size=(per, dim)))
            c = 2 * p + j
            y.extend([-1] * per if unseen else [-1] * (per - annotated) + [c] * annotated)
            truth.extend([f"unseen{p}.{j}" if unseen else f"intent{c}"] * per)
    X = np.vstack(X).astype(np.float32)
    return X / np.linalg.norm(X, axis=1, keepdims=True), np.array(y), np.array(truth)


def test_a_group_of_two_intents_is_cut_again_and_a_single_one_is_not():
    rng = np.random.default_rng(0)
    dim = 48
    a, b, c = np.zeros((3, dim))
    a[0], b[0], b[1], c[2] = 4.0, 4.0, 1.6, 4.0
    X = np.vstack([a + 0.3 * rng.normal(size=(60, dim)), b + 0.3 * rng.normal(size=(60, dim)),
                   c + 0.6 * rng.normal(size=(60, dim))])  # c: one diffuse intent
    truth = np.repeat(["a", "b", "c"], 60)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    coarse = group_candidates(X, threshold=0.7, min_size=3)
    assert len(set(coarse[:120])) == 1 and coarse[0] >= 0  # the neighbours merge at the coarse cut
    fine_everywhere = group_candidates(X, threshold=0.24, min_size=3)
    pieces = fine_everywhere[120:]
    assert np.sum(pieces == np.bincount(pieces[pieces >= 0], minlength=1).argmax()) < 30  # the diffuse one falls apart
    groups = group_candidates(X, threshold=0.7, min_size=3, fine_threshold=0.24, split_size=1.3 * 60)
    for name in ("a", "b"):
        values, counts = np.unique(groups[truth == name], return_counts=True)
        assert counts.max() >= 0.9 * 60 and values[np.argmax(counts)] >= 0
    assert groups[truth == "a"][0] != groups[truth == "b"][0]
    assert len(set(groups[truth == "c"])) == 1 and groups[120] >= 0  # under split_size: left whole
    assert set(groups[truth == "c"]).isdisjoint(groups[:120])


def test_the_cut_is_calibrated_where_neighbouring_intents_stay_apart():
    X, y, truth = paired_intents()
    rows = np.flatnonzero(y >= 0)
    within = float(np.mean(1 - X[y == 0] @ X[y == 0].T))
    between = float(np.mean(1 - X[y == 0] @ X[y == 1].T))  # a pair's two intents
    cut = calibrated_cut(X, y, n_candidates=len(rows) // 2, ceiling=0.9)
    assert within * 0.8 < cut < between
    pure = group_candidates(X[rows], threshold=cut, min_size=3)
    assert all(len(set(pure[truth[rows] == t]) - {-1}) >= 1 for t in ("intent0", "intent1"))
    assert set(pure[truth[rows] == "intent0"]).isdisjoint(pure[truth[rows] == "intent1"]) or \
        np.mean(pure[truth[rows] == "intent0"] == pure[truth[rows] == "intent1"][0]) < 0.2
    far = np.where(y % 2 == 0, y, -1)  # only one intent of each pair: nothing neighbours anything
    assert calibrated_cut(X, far, n_candidates=len(rows) // 4, ceiling=0.9) > between
    assert calibrated_cut(X, y, n_candidates=10, ceiling=0.1) == 0.1


def test_two_neighbouring_unseen_intents_come_out_as_two_groups():
    X, y, truth = paired_intents(unseen_pairs=2, separation=2.0)
    labels = [None if v < 0 else f"intent{v}" for v in y]
    context = SignalContext(ids=np.arange(len(X)), texts=[f"{t} words" for t in truth], vectors=X, labels=labels,
                            splits=[None] * len(X))
    result = OutOfScope().find(context)
    group = np.array([r["group_id"] or 0 for r in result.records()])
    for p in (8, 9):
        majority = []
        for j in (0, 1):
            values, counts = np.unique(group[truth == f"unseen{p}.{j}"], return_counts=True)
            assert values[np.argmax(counts)] > 0 and counts.max() >= 0.8 * 60
            majority.append(values[np.argmax(counts)])
        assert majority[0] != majority[1]
    assert result.report["group_split_cut"] <= result.report["group_cut"]


# --- at scale: the same answers from bounded memory and time ------------------------------------


def test_blocked_exact_search_gives_the_single_product_answer(monkeypatch):
    """Above ``_KEY_BLOCK`` known rows the exact search runs block by block with a running top
    k; its answer is the one-product answer (ties: lowest row number, the query never itself)."""
    import hl_debug.scoring.oos_evidence as ev

    context, _ = blobs(dim=16)
    X = context.vectors.copy()
    X[5] = X[9]  # an exact tie across blocks
    known = np.ones(len(X), dtype=bool)
    known[::4] = False
    queries = np.r_[np.arange(0, len(X), 3), 9]
    single = top_k_known(X, queries, known, 6)
    monkeypatch.setattr(ev, "_KEY_BLOCK", 7)
    monkeypatch.setattr(ev, "_ROWS", 11)  # queries in chunks too
    blocked = top_k_known(X, queries, known, 6)
    for a, b in zip(single, blocked):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    assert blocked[2][-1] == 5 and 9 not in blocked[2][queries == 9]


def test_gaussians_summed_in_blocks_match_one_pass(monkeypatch):
    import hl_debug.scoring.oos_evidence as ev

    context, _ = blobs(dim=12)
    y = context.y
    dropped = np.zeros(len(y), dtype=bool)
    dropped[::5] = True
    queries, keep = np.arange(0, len(y), 2), np.array([0, 1, 3, 4])
    one = SharedGaussians(context.vectors, y).distances(queries, keep, dropped=dropped, key="f")
    monkeypatch.setattr(ev, "_ROWS", 17)
    blocked = SharedGaussians(context.vectors, y).distances(queries, keep, dropped=dropped, key="f")
    for a, b in zip(one, blocked):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)
    full = SharedGaussians(context.vectors, y)
    sampled = SharedGaussians(context.vectors, y, shrinkage_rows=200)  # the intensities from 200 of 300 rows
    assert (sampled.alpha, sampled.alpha0) != (full.alpha, full.alpha0)
    assert abs(sampled.alpha - full.alpha) < 0.1 and abs(sampled.alpha0 - full.alpha0) < 0.1
    assert SharedGaussians(context.vectors, y, shrinkage_rows=300).alpha == full.alpha


def test_calibration_rows_are_capped_in_proportion_and_still_find_the_unseen_blob():
    context, truth = blobs()
    X, y = context.vectors, context.y
    n_annotated = int((y >= 0).sum())
    graph = context.neighbors(32)
    full = OutOfScopeDetector().fit(X, y, graph=graph)
    capped = OutOfScopeDetector(max_calibration_rows=120).fit(X, y, graph=graph)
    assert len(full.calibration_scores_[1]) == n_annotated
    pseudo_classes = capped.calibration_scores_[2]
    assert 110 <= len(pseudo_classes) <= 130
    assert sorted(np.unique(pseudo_classes)) == list(range(N_INTENTS))  # every intent, in proportion
    assert np.bincount(pseudo_classes).max() - np.bincount(pseudo_classes).min() <= 2
    assert len(capped.calibration_scores_[0]) == n_annotated  # in-scope: every annotated row, as before
    unseen = truth == "unseen"
    for det in (full, capped):
        assert det.scores_[unseen].min() > np.quantile(det.scores_[~unseen & (y >= 0)], 0.9)
    with pytest.raises(ValueError, match="max_calibration_rows"):
        OutOfScopeDetector(max_calibration_rows=0).fit(X, y, graph=graph)


def test_groups_of_many_candidates_come_from_a_sample_and_agree_with_the_full_linkage():
    from sklearn.metrics import adjusted_rand_score

    context, truth = blobs()
    X = context.vectors
    threshold = intent_spread(X, context.y)
    full = group_candidates(X, threshold=threshold, min_size=3)
    sampled = group_candidates(X, threshold=threshold, min_size=3, max_rows=150)
    assert len(np.unique(sampled[sampled >= 0])) == len(np.unique(full[full >= 0])) == N_INTENTS + 1
    assert adjusted_rand_score(full, sampled) > 0.95
    assert adjusted_rand_score(truth, sampled) > 0.95
    again = group_candidates(X, threshold=threshold, min_size=3, max_rows=150)
    assert np.array_equal(sampled, again)  # seeded
    sizes = np.bincount(sampled[sampled >= 0])
    assert np.all(np.diff(sizes) <= 0)  # largest group first


def test_two_hop_search_finds_the_known_rows_a_narrow_graph_lists_too_few_of():
    from hl_debug.neighbors import KnnMemo, knn

    context, _ = blobs(dim=16)
    X = context.vectors
    known = np.zeros(len(X), dtype=bool)
    known[::3] = True
    queries = np.arange(len(X))
    graph = knn(X, 10)  # lists fewer than 5 known rows for most queries
    exact = top_k_known(X, queries, known, 5)
    hops = top_k_known(X, queries, known, 5, graph=graph, two_hops=True)
    assert (known[graph[0]].sum(axis=1) < 5).mean() > 0.5
    assert np.isclose(exact[0], hops[0], rtol=1e-5).mean() > 0.7  # approximate: the top 5 mostly within two hops
    assert np.abs(exact[0] - hops[0]).max() < 0.02 and np.mean(hops[2] == exact[2]) > 0.98
    assert np.all(hops[0] <= exact[0] + 1e-6)  # never better than the exact answer
    assert np.all(known[hops[2]]) and not np.any(hops[2] == queries)
    lonely = np.zeros(len(X), dtype=bool)
    lonely[[0, 500]] = True  # two known rows: no two-hop neighbourhood holds 2 known rows for most
    np.testing.assert_allclose(top_k_known(X, queries, lonely, 2, graph=graph, two_hops=True)[0],
                               top_k_known(X, queries, lonely, 2)[0], rtol=1e-5)  # exact fallback
    assert not context.approximate_graph
    context.knn_memo = KnnMemo(approx_above=len(X) - 1)
    assert context.approximate_graph


def test_with_the_two_hop_search_the_nearest_rows_come_from_the_evidence_passes():
    context, _ = blobs()
    X, y = context.vectors, context.y
    graph = context.neighbors(32)
    plain = OutOfScopeDetector().fit(X, y, graph=graph)
    hops = OutOfScopeDetector(two_hops=True).fit(X, y, graph=graph)
    assert np.mean(plain.nearest_ == hops.nearest_) > 0.99
    np.testing.assert_allclose(plain.nearest_similarity_, hops.nearest_similarity_, atol=1e-5)
    assert np.all((y[hops.nearest_] >= 0) & (hops.nearest_ != np.arange(len(y))))
