"""The map and clusters: the estimator (hl_debug.models.map) on synthetic blobs, the step (hl_debug.steps.analyze), CLI."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score

from hl_debug.cli import cli
from hl_debug.errors import AnalysisError, ConfigError, MissingStepError
from hl_debug.models.map import (
    UMAP_JIT_FUNCTIONS,
    MapAnalyzer,
    default_cluster_selection_epsilon,
    default_min_cluster_size,
    default_min_samples,
    enable_jit_cache,
    import_umap,
)
from hl_debug.neighbors import knn_graph
from hl_debug.steps.analyze import analyze, analyze_step
from hl_debug.steps.embed import embed
from hl_debug.steps.ingest import ingest
from hl_debug.storage import CLUSTERS, NEIGHBORS, POINTS
from tests.fakes import FakeEncoder


def blobs(n_per: int = 40, centers: int = 4, dim: int = 24, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Well separated Gaussian blobs on the unit sphere, shape (n_per * centers, dim)."""
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centers, dim))
    y = np.repeat(np.arange(centers), n_per)
    X = c[y] + 0.15 * rng.normal(size=(len(y), dim))
    return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32), y


def cheap(**kw) -> MapAnalyzer:
    """An analyzer whose projections are PCA (no numba JIT), clustering the real HDBSCAN."""
    return MapAnalyzer(map_model=PCA(2, random_state=0), reduce_model=PCA(5, random_state=0), **kw)


# -- knn graph ------------------------------------------------------------------------------


def test_knn_graph_self_first_and_exact():
    X, _ = blobs(n_per=10)
    X[1] = X[0]  # an exact duplicate must not displace row 1 from its own column 0
    idx, dist = knn_graph(X, 6)
    assert idx.shape == dist.shape == (40, 6)
    assert (idx[:, 0] == np.arange(40)).all() and np.allclose(dist[:, 0], 0)
    assert idx[0, 1] == 1 and idx[1, 1] == 0
    sims = X @ X.T
    for i in (3, 17, 39):
        others = np.argsort(-sims[i])
        others = others[others != i][:5]
        assert set(idx[i, 1:]) == set(others)
        assert np.allclose(dist[i, 1:], 1 - sims[i, idx[i, 1:]], atol=1e-5)
    with pytest.raises(ValueError, match="n_neighbors must be between 2"):
        knn_graph(X, 41)


# -- the estimator -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def umap_fit():
    X, y = blobs()
    return X, y, MapAnalyzer(n_epochs=60).fit(X)


def test_umap_hdbscan_recovers_blobs(umap_fit):
    X, y, m = umap_fit
    assert m.embedding_.shape == (len(X), 2) and m.reduced_.shape == (len(X), 5)
    assert m.noise_share_ < 0.1
    clustered = m.labels_ != -1
    assert adjusted_rand_score(y[clustered], m.labels_[clustered]) > 0.95
    assert m.n_clusters_ == 4
    assert m.min_cluster_size_ == default_min_cluster_size(len(X)) and m.min_samples_ >= 2
    assert np.isfinite(m.outlier_scores_).all() and ((m.probabilities_ >= 0) & (m.probabilities_ <= 1)).all()
    assert (m.nearest_cluster_ >= 0).all()
    assert m.knn_indices_.shape == (len(X), 15)


def test_same_inputs_give_same_map_and_clusters(umap_fit):
    X, _, first = umap_fit
    second = MapAnalyzer(n_epochs=60).fit(X.copy())
    assert np.array_equal(first.labels_, second.labels_)
    assert np.allclose(first.embedding_, second.embedding_)


def test_umaps_side_by_side_give_the_same_results_as_one_after_the_other(umap_fit):
    X, _, sequential = umap_fit
    assert sequential.n_jobs_ == 1  # small data: no second process
    concurrent = MapAnalyzer(n_epochs=60, n_jobs=2).fit(X)
    assert concurrent.n_jobs_ == 2
    assert np.array_equal(concurrent.embedding_, sequential.embedding_)
    assert np.array_equal(concurrent.reduced_, sequential.reduced_)
    assert np.array_equal(concurrent.labels_, sequential.labels_)


def test_a_failing_worker_process_falls_back_to_one_after_the_other(umap_fit, monkeypatch, caplog):
    from hl_debug.models import map as an
    monkeypatch.setattr(an, "WORKER_CODE", "raise SystemExit('worker died')")
    X, _, sequential = umap_fit
    m = MapAnalyzer(n_epochs=60, n_jobs=2).fit(X)
    assert m.n_jobs_ == 1 and np.array_equal(m.embedding_, sequential.embedding_)
    assert "worker died" in caplog.text


def test_umap_jit_functions_are_cached_on_disk():
    import importlib

    import_umap()
    for module_name, name in UMAP_JIT_FUNCTIONS:
        func = getattr(importlib.import_module(module_name), name)
        assert type(func._cache).__name__ != "NullCache", f"{module_name}.{name} is not cached"
    assert enable_jit_cache() == []  # already on: nothing to do


def test_sub_models_can_be_swapped():
    class Halves:
        """Stand-in clusterer: left half cluster 0, right half 1, a few noise points."""

        def fit(self, Z):
            self.labels_ = (Z[:, 0] > np.median(Z[:, 0])).astype(int)
            self.labels_[:3] = -1
            return self

    X, _ = blobs(n_per=15)
    m = cheap(cluster_model=Halves()).fit(X)
    assert m.n_clusters_ == 2 and m.noise_share_ == pytest.approx(3 / 60)
    assert np.isnan(m.outlier_scores_).all()  # the stand-in has none
    # noise keeps -1 but gets the cluster of its closest clustered points
    assert (m.labels_[:3] == -1).all() and set(m.nearest_cluster_[:3]) <= {0, 1}
    assert (m.nearest_cluster_[3:] == m.labels_[3:]).all()


@pytest.mark.parametrize(
    ("X", "kwargs", "match"),
    [
        (np.zeros(10), {}, r"shape \(n, dim\)"),
        (np.ones((3, 4)), {}, "at least 5 rows"),
        (np.vstack([np.ones((6, 4)), [[np.nan] * 4]]), {}, "non-finite values .first in row 6"),
        (np.ones((8, 4)), {"cluster_selection_method": "dbscan"}, "valid: eom, leaf"),
        (np.ones((8, 4)), {"min_cluster_size": 1}, "min_cluster_size"),
        (np.ones((8, 4)), {"n_neighbors": 1}, "n_neighbors must be an integer >= 2"),
        (np.ones((8, 4)), {"cluster_selection_epsilon": -0.1}, "cluster_selection_epsilon must be"),
        (np.ones((8, 4)), {"n_jobs": 4}, "n_jobs must be 1, 2 or None"),
        (np.ones((8, 4)), {"cluster_selection_epsilon": float("inf")}, "cluster_selection_epsilon must be"),
    ],
)
def test_estimator_rejects_bad_input(X, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cheap(**kwargs).fit(X)


def test_default_min_cluster_size_scales_then_stays_sub_topic_sized():
    assert default_min_cluster_size(100) == 5
    assert default_min_cluster_size(2327) == 16
    # a sub-topic does not grow with the export: 16 from the bundled export's size on
    # (the earlier rule's 2.3 n^0.25 gave 27 at 20k and 41 at 100k and fused intents)
    assert default_min_cluster_size(20000) == default_min_cluster_size(100_000) == 16


def test_default_hdbscan_parameters_keep_the_bundled_export_and_grow_slowly_beyond():
    # the bundled export (2,327 rows) keeps the values docs/FINDINGS.md was written with
    assert (default_min_cluster_size(2327), default_min_samples(16), default_cluster_selection_epsilon(2327)) == (16, 5, 0)
    # below it, sqrt(n)/3 as before
    assert [default_min_cluster_size(n) for n in (500, 2000)] == [7, 15]
    assert [default_min_samples(default_min_cluster_size(n)) for n in (20_000, 100_000)] == [5, 5]
    eps = [default_cluster_selection_epsilon(n) for n in (1, 2500, 3000, 13_000, 20_000, 25_000, 100_000, 10**7)]
    assert eps[:2] == [0, 0] and 0 < eps[2] < eps[3] < eps[4] < 0.2 and eps[5:] == [0.2, 0.2, 0.2]
    assert eps[3] == pytest.approx(0.143, abs=0.001)  # banking77's 13k rows
    sizes = [default_min_cluster_size(n) for n in range(1, 200_000, 997)]
    assert sizes == sorted(sizes)


def test_cluster_selection_epsilon_reaches_hdbscan_and_merges_close_clusters():
    X, _ = blobs()
    default = cheap().fit(X)
    assert default.cluster_selection_epsilon_ == 0 and default.cluster_model_.cluster_selection_epsilon == 0
    merged = cheap(cluster_selection_epsilon=1.0).fit(X)
    assert merged.cluster_model_.cluster_selection_epsilon == 1.0
    assert merged.n_clusters_ < default.n_clusters_ == 4


# -- the pipeline step on a synthetic store ------------------------------------------------

TOPICS = {
    "card_issue": "card atm stolen blocked pin debit lost reader",
    "bill_question": "bill water gas electric due owe pay invoice",
    "chat_settings": "voice name language speak slowly whisper mode rename",
}
TRAVEL = "travel abroad trip spain france notice flight holiday"


def synthetic_records(seed: int = 1) -> list[dict]:
    """3 annotated topics of 20 rows, one planted mislabel, and 12 unannotated travel rows."""
    rnd = random.Random(seed)
    recs, rid = [], 5000
    for intent, vocab in TOPICS.items():
        words = vocab.split()
        for j in range(20):
            text = " ".join(rnd.sample(words, 4)) + f" {j}"
            usage = ("training", "validation", "testing")[j % 3]
            recs.append({"id": rid, "project_id": 7, "complete": True, "usage": usage, "score": 0.1,
                         "data": json.dumps({"text": text, "intent": intent})})
            rid += 1
    recs[3]["data"] = json.dumps({"text": json.loads(recs[3]["data"])["text"], "intent": "bill_question"})
    for j in range(12):
        text = " ".join(rnd.sample(TRAVEL.split(), 4)) + f" {j}"
        recs.append({"id": rid, "project_id": 7, "complete": False, "usage": None, "score": 0.5,
                     "data": json.dumps({"text": text, "intent": ""})})
        rid += 1
    return recs


@pytest.fixture
def synth_store(store, write_export):
    ingest(store, write_export(synthetic_records()))
    embed(store, FakeEncoder(dim=64), progress=False)
    return store


def test_analyze_writes_points_neighbors_clusters_and_report(synth_store):
    counts = analyze(synth_store, cheap(), progress=False)
    assert counts["n_points"] == 72 and not counts["skipped"] and counts["reprojected"]
    points = synth_store.table_rows(POINTS, order="id")
    assert len(points) == 72 and {"x", "y", "cluster_id", "nearest_cluster", "outlier_score"} <= set(points[0])
    nbrs = synth_store.table_rows(NEIGHBORS, equals={"id": 5000}, order="id")
    assert [r["rank"] for r in nbrs] == list(range(1, 11)) and all(r["neighbor_id"] != 5000 for r in nbrs)
    assert all(-1 <= r["similarity"] <= 1 for r in nbrs)
    assert [r["similarity"] for r in nbrs] == sorted((r["similarity"] for r in nbrs), reverse=True)
    clusters = synth_store.table_rows(CLUSTERS, order="cluster_id")
    assert clusters and sum(c["size"] for c in clusters) + counts["n_noise"] == 72
    assert all(json.loads(c["label_counts"]) is not None and c["keywords"] for c in clusters)
    report = synth_store.report("analysis")
    assert report["n_points"] == 72 and report["min_cluster_size"] == 5
    assert report["cluster_selection_epsilon"] == 0
    # the planted mislabel (id 5003, bill_question among card_issue) is a suspect of an impure cluster
    suspects = {s["id"] for r in report["impure_clusters"] for s in r["suspects"]}
    assert 5003 in suspects
    # the unannotated travel rows are the top unannotated region
    top = report["unannotated_regions"][0]
    assert top["unannotated_share"] > 0.8 and set(top["unannotated_ids"]) <= set(range(5060, 5072))
    run = synth_store.last_run("analyze")
    assert run["parameters"]["custom_models"] == ["map_model", "reduce_model"] and "hdbscan" in run["versions"]


def test_analyze_skips_when_unchanged_and_reuses_map_when_only_labels_change(synth_store, write_export):
    # max_cluster_labels=None: the clusters do not depend on the labels (with it, the default,
    # a label change re-clusters: test_analyze_reclusters_on_a_label_change_...)
    analyzer = MapAnalyzer(n_epochs=30, max_cluster_labels=None)
    first = analyze(synth_store, analyzer, progress=False)
    assert not first["skipped"] and first["reprojected"]
    again = analyze(synth_store, MapAnalyzer(n_epochs=30, max_cluster_labels=None), progress=False)
    assert again["skipped"] and again["n_clusters"] == first["n_clusters"]
    points_before = synth_store.table_rows(POINTS, order="id")
    recs = synthetic_records()
    recs[3]["data"] = json.dumps({"text": json.loads(recs[3]["data"])["text"], "intent": "card_issue"})
    ingest(synth_store, write_export(recs, "fixed.json"))
    relabelled = analyze(synth_store, MapAnalyzer(n_epochs=30, max_cluster_labels=None), progress=False)
    assert not relabelled["skipped"] and not relabelled["reprojected"]
    assert synth_store.table_rows(POINTS, order="id") == points_before
    suspects = {s["id"] for r in synth_store.report("analysis")["impure_clusters"] for s in r["suspects"]}
    assert 5003 not in suspects
    changed = analyze(synth_store, MapAnalyzer(n_epochs=30, min_cluster_size=6), progress=False)
    assert changed["reprojected"]
    widened = analyze(synth_store, MapAnalyzer(n_epochs=30, min_cluster_size=6, cluster_selection_epsilon=0.5),
                      progress=False)
    assert not widened["skipped"]
    assert synth_store.report("analysis")["cluster_selection_epsilon"] == 0.5


def test_analyze_step_reads_options(synth_store):
    counts = analyze_step(synth_store, {"n_epochs": 30, "k_neighbors": 3, "progress": False})
    assert counts["n_points"] == 72
    assert max(r["rank"] for r in synth_store.table_rows(NEIGHBORS)) == 3
    assert synth_store.last_run("analyze")["parameters"]["n_epochs"] == 30


def test_analyze_needs_embeddings(store, write_export):
    ingest(store, write_export(synthetic_records()))
    with pytest.raises(MissingStepError, match="no embeddings") as exc:
        analyze(store, cheap(), progress=False)
    assert "hl-debug embed" in exc.value.hint


def test_analyze_rejects_bad_options_naming_the_flag(synth_store):
    with pytest.raises(ConfigError, match=r"--min-samples=0.*--k-neighbors=0|--k-neighbors=0"):
        analyze(synth_store, MapAnalyzer(min_samples=0), k_neighbors=0, progress=False)
    with pytest.raises(ConfigError, match="valid: wilson, share, count"):
        analyze(synth_store, cheap(), impurity_method="entropy", progress=False)


def test_analyze_too_few_utterances(store, write_export):
    ingest(store, write_export(synthetic_records()[:3]))
    embed(store, FakeEncoder(), progress=False)
    with pytest.raises(AnalysisError, match="at least 5"):
        analyze(store, cheap(), progress=False)


# -- CLI ------------------------------------------------------------------------------


def test_cli_analyze_and_exports(tiny_store, db_path, tmp_path):
    embed(tiny_store, FakeEncoder(), progress=False)
    runner = CliRunner()
    r = runner.invoke(cli, ["--db", str(db_path), "analyze", "--epochs", "30"], obj={})
    assert r.exit_code == 0, r.output
    assert "24 points in" in r.output
    r = runner.invoke(cli, ["--db", str(db_path), "analyze", "--epochs", "30"], obj={})
    assert "up to date" in r.output
    r = runner.invoke(cli, ["--db", str(db_path), "export", "points"], obj={})
    assert r.exit_code == 0, r.output
    lines = r.output.strip().splitlines()
    assert lines[0] == "id,x,y,cluster_id,intent,usage,predicted_label" and len(lines) == 25
    out = tmp_path / "clusters.json"
    r = runner.invoke(cli, ["--db", str(db_path), "export", "clusters", "--format", "json", "-o", str(out)], obj={})
    assert r.exit_code == 0, r.output
    rows = json.loads(out.read_text())
    assert list(rows[0]) == ["cluster_id", "size", "n_annotated", "n_unannotated", "majority_intent", "purity",
                             "label_entropy", "keywords"]


def test_cli_export_before_analyze_names_the_step(tiny_store, db_path):
    r = CliRunner().invoke(cli, ["--db", str(db_path), "export", "points"], obj={})
    assert r.exit_code != 0 and "hl-debug analyze" in r.output


def test_cli_analyze_bad_option(tiny_store, db_path):
    embed(tiny_store, FakeEncoder(), progress=False)
    r = CliRunner().invoke(cli, ["--db", str(db_path), "analyze", "--min-cluster-size", "1"], obj={})
    assert r.exit_code != 0 and "--min-cluster-size=1" in r.output and "Hint:" in r.output
    r = CliRunner().invoke(cli, ["--db", str(db_path), "analyze", "--cluster-epsilon", "-1"], obj={})
    assert r.exit_code != 0 and "--cluster-epsilon=-1.0" in r.output


def test_cli_embed_with_fake_encoder_name_fails_clearly(tiny_store, db_path):
    r = CliRunner().invoke(cli, ["--db", str(db_path), "embed", "--encoder", str(db_path.parent / "no-such-model")],
                           obj={})
    assert r.exit_code != 0 and "could not load sentence encoder" in r.output and "Hint:" in r.output


# -- clusters that respect intents ------------------------------------------------------------


def paired_blobs(seed: int = 0, n_flips: int = 2) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """Four intents of two blobs each (30 rows a blob), intents 0/1 and 2/3 close together,
    ``n_flips`` rows of every intent given another intent's label.

    Returns vectors, true intents, given labels and the flipped mask.
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(8, 24))
    centres[2:4] = centres[0:2] + 0.35 * rng.normal(size=(2, 24))
    blob = np.repeat(np.arange(8), 30)
    true = blob // 2
    X = centres[blob] + 0.12 * rng.normal(size=(len(blob), 24))
    X = (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)
    given = [f"intent{t}" for t in true]
    flipped = np.zeros(len(true), dtype=bool)
    for t in range(4):
        for i in rng.choice(np.flatnonzero(true == t), n_flips, replace=False):
            given[i] = f"intent{(t + 1 + rng.integers(3)) % 4}"
            flipped[i] = True
    return X, true, given, flipped


def intents_per_cluster(labels: np.ndarray, true: np.ndarray, share: float = 0.10) -> list[int]:
    return [int(sum(np.bincount(true[labels == c]) / (labels == c).sum() > share)) for c in np.unique(labels[labels >= 0])]


def test_split_mixed_clusters_undoes_only_the_merges_that_mix_intents():
    from hl_debug.models.cluster_rules import split_mixed_clusters

    merged = np.array([0] * 8 + [1] * 4 + [-1])
    fine = np.array([0, 0, 1, 1, 2, 2, -1, 3, 4, 4, 5, 5, -1])
    given = ["a", "a", "b", "b", "c", "c", "d", "d", "x", "x", "y", None, None]
    out, split = split_mixed_clusters(merged, fine, given)
    assert split == [0]  # 4 labels over 10% in cluster 0; cluster 1 holds 2
    assert out.tolist() == [0, 0, 1, 1, 2, 2, -1, 3, 4, 4, 4, 4, -1]  # pieces in its place, noise stays noise
    kept, none = split_mixed_clusters(merged, fine, given, max_labels=4)
    assert none == [] and kept.tolist() == merged.tolist()
    assert split_mixed_clusters(merged, fine, given, max_labels=1)[1] == [0]  # cluster 1: 3 annotated rows
    assert split_mixed_clusters(merged, fine, given, max_labels=1, min_annotated=3)[1] == [0, 1]
    assert split_mixed_clusters(merged, fine, [None] * 13)[1] == []  # no labels: nothing to judge
    with pytest.raises(ValueError, match="same length"):
        split_mixed_clusters(merged, fine[:-1], given)
    with pytest.raises(ValueError, match="max_labels"):
        split_mixed_clusters(merged, fine, given, max_labels=0)


def condensed_tree(rows: list[tuple[int, int, float, int]]) -> np.ndarray:
    return np.array(rows, dtype=[("parent", np.int64), ("child", np.int64), ("lambda_val", float),
                                 ("child_size", np.int64)])


# 20 points; root 20 -> node 21 (points 0-11) and leaf 22 (points 12-19); node 21 -> leaves
# 23 (points 0-5) and 24 (points 6-10), point 11 leaves 21 before it splits. In leaf 22 the
# points 12-15 leave early (low density), 16-19 stay to the end.
TREE = condensed_tree([(20, 21, 1.0, 12), (20, 22, 1.0, 8), (21, 23, 2.0, 6), (21, 24, 2.0, 5), (21, 11, 1.5, 1)]
                      + [(23, i, 3.0, 1) for i in range(6)] + [(24, i, 3.0, 1) for i in range(6, 11)]
                      + [(22, 12 + j, lam, 1) for j, lam in enumerate([1.1, 1.2, 1.3, 1.4, 3.0, 3.0, 3.0, 3.0])])
TREE_CLUSTERS = np.array([0] * 12 + [1] * 8)
TREE_LABELS = list("aaabbbcccdde") + list("xyzvwwww")


def test_cut_mixed_clusters_descends_the_condensed_tree_then_keeps_a_leafs_dense_core():
    from hl_debug.models.cluster_rules import cut_mixed_clusters

    out, counts = cut_mixed_clusters(TREE_CLUSTERS, TREE, TREE_LABELS, min_size=3)
    # node 21 (a, b, c, d over 10%) -> its children 23 (a, b) and 24 (c, d); point 11 left it before the split
    # leaf 22 (w + four single labels) -> its densest part with <= 3 labels: points 14-19
    assert out.tolist() == [0] * 6 + [1] * 5 + [-1] + [-1, -1] + [2] * 6
    assert counts == {"n_cut": 2, "n_parts": 3, "n_cores": 1, "n_noise": 3}
    # no core of min_size rows holds <= 3 labels: the leaf's rows become noise
    strict, counts = cut_mixed_clusters(TREE_CLUSTERS, TREE, TREE_LABELS, min_size=7)
    assert strict.tolist() == [0] * 6 + [1] * 5 + [-1] * 9 and counts["n_noise"] == 9 and counts["n_cores"] == 0
    # a 3-label cluster is kept: max_labels is "more than"
    kept, counts = cut_mixed_clusters(TREE_CLUSTERS, TREE, list("aaaaabbbbccc") + list("wwwwwwww"))
    assert kept.tolist() == TREE_CLUSTERS.tolist() and counts["n_cut"] == 0
    assert cut_mixed_clusters(TREE_CLUSTERS, TREE, TREE_LABELS, max_labels=5)[0].tolist() == TREE_CLUSTERS.tolist()
    assert cut_mixed_clusters(TREE_CLUSTERS, TREE, [None] * 20)[1]["n_cut"] == 0  # no labels: nothing to judge
    with pytest.raises(ValueError, match="same length"):
        cut_mixed_clusters(TREE_CLUSTERS, TREE, TREE_LABELS[:-1])
    with pytest.raises(ValueError, match="each of the 20 points once"):
        cut_mixed_clusters(TREE_CLUSTERS, TREE[:-1], TREE_LABELS)


class Fixed:
    """A stand-in UMAP returning a fixed layout (HDBSCAN then clusters exactly these points)."""

    def __init__(self, embedding: np.ndarray) -> None:
        self.embedding = embedding

    def fit_transform(self, X: np.ndarray) -> np.ndarray:
        return self.embedding


def test_a_cluster_hdbscan_itself_makes_across_four_intents_is_cut_and_a_three_intent_one_kept():
    # 2-D layout: intents 0-3 four touching blobs (HDBSCAN keeps them as one cluster), intents
    # 4-6 three touching blobs (one cluster of three overlapping intents), intent 7 alone
    rng = np.random.default_rng(0)
    centres = [(0, 0), (1.2, 0), (0, 1.2), (1.2, 1.2), (8, 0), (9.2, 0), (8.6, 1.0), (0, 8)]
    layout = np.vstack([rng.normal(c, 0.3, size=(25, 2)) for c in centres])
    true = np.repeat(np.arange(8), 25)
    given = [f"intent{t}" for t in true]
    given[3], given[30] = "intent5", "intent2"  # two flips
    X = rng.normal(size=(len(true), 8)).astype(np.float32)

    def fit(**kw) -> MapAnalyzer:
        return MapAnalyzer(map_model=Fixed(layout), reduce_model=Fixed(layout), min_cluster_size=10, min_samples=3,
                           **kw).fit(X, given)

    plain = fit(max_cluster_labels=None)
    assert sorted(intents_per_cluster(plain.labels_, true)) == [1, 3, 4] and plain.cut_["n_cut"] == 0
    model = fit()
    assert max(intents_per_cluster(model.labels_, true)) <= 3 and model.cut_["n_cut"] == 1 and model.n_split_ == 0
    three = plain.labels_[true == 4][0]
    assert set(np.flatnonzero(model.labels_ == model.labels_[true == 4][0])) == set(np.flatnonzero(plain.labels_ == three))
    assert model.noise_share_ <= 0.1 and model.cut_["n_noise"] == int((model.labels_ == -1).sum())
    assert (model.probabilities_[model.labels_ == -1] == 0).all()
    # the labels only cut: each flipped row stays with (most of) its true intent's rows, not its label's
    for i in (3, 30):
        mates = model.labels_[(true == true[i]) & (model.labels_ >= 0)]
        assert model.labels_[i] == np.bincount(mates).argmax()
    # fit_predict passes the labels on
    assert fit(max_cluster_labels=3).labels_.tolist() == MapAnalyzer(
        map_model=Fixed(layout), reduce_model=Fixed(layout), min_cluster_size=10, min_samples=3).fit_predict(
            X, given).tolist()


def test_clusters_keep_intents_apart_when_epsilon_merges_them():
    X, true, given, _ = paired_blobs()
    merged = cheap(min_cluster_size=10, cluster_selection_epsilon=2.0, max_cluster_labels=None).fit(X, given)
    assert max(intents_per_cluster(merged.labels_, true)) == 4  # epsilon alone fuses all four intents
    model = cheap(min_cluster_size=10, cluster_selection_epsilon=2.0).fit(X, given)
    assert model.n_split_ == 1 and model.n_clusters_ == 8
    assert max(intents_per_cluster(model.labels_, true)) == 1  # every cluster one intent
    assert adjusted_rand_score(true, model.labels_) > adjusted_rand_score(true, merged.labels_)
    assert np.isfinite(model.probabilities_).all() and model.noise_share_ <= 0.1
    # the labels only cut the hierarchy: without them, or at epsilon 0, nothing changes
    assert cheap(min_cluster_size=10, cluster_selection_epsilon=2.0).fit(X).n_split_ == 0
    zero = cheap(min_cluster_size=10).fit(X, given)
    assert zero.labels_.tolist() == cheap(min_cluster_size=10, max_cluster_labels=None).fit(X).labels_.tolist()


def test_flipped_rows_stay_with_their_true_intent_and_are_the_likely_errors():
    from hl_debug.scoring import clusters as cl

    X, true, given, flipped = paired_blobs()
    model = cheap(min_cluster_size=10, cluster_selection_epsilon=2.0).fit(X, given)
    idx, _ = knn_graph(X, 11)
    agreement = cl.neighbor_label_agreement(idx[:, 1:], given)
    stats = cl.cluster_stats(model.labels_, given, [None] * len(given))
    ranked = cl.rank_impure_clusters(stats, model.labels_, given, np.arange(len(given)), neighbor_agreement=agreement,
                                     nearest_cluster=model.nearest_cluster_)
    likely = {s["id"] for r in ranked for s in r["suspects"] if s["likely_error"]}
    assert likely == set(np.flatnonzero(flipped).tolist())  # all 8 flips, nothing else


def test_analyze_reclusters_on_a_label_change_when_clusters_depend_on_labels(synth_store, write_export):
    first = analyze(synth_store, cheap(cluster_selection_epsilon=0.5), progress=False)
    assert first["reprojected"]
    report = synth_store.report("analysis")
    assert report["n_split_clusters"] >= 0 and report["suspect_max_agreement"] == 0.3
    assert set(report["cut_clusters"]) == {"n_cut", "n_parts", "n_cores", "n_noise"}
    assert all("likely_error" in s for r in report["impure_clusters"] for s in r["suspects"])
    assert report["n_likely_errors"] == sum(r["n_likely_errors"] for r in report["impure_clusters"])
    recs = synthetic_records()
    recs[3]["data"] = json.dumps({"text": json.loads(recs[3]["data"])["text"], "intent": "card_issue"})
    ingest(synth_store, write_export(recs, "fixed.json"))
    analyzer = MapAnalyzer(n_epochs=30, cluster_selection_epsilon=0.5)
    assert analyze(synth_store, analyzer, progress=False)["reprojected"]
    # at epsilon 0 too: the default cuts mixed clusters whatever the epsilon
    analyze(synth_store, MapAnalyzer(n_epochs=30), progress=False)
    recs[3]["data"] = json.dumps({"text": json.loads(recs[3]["data"])["text"], "intent": "chat_settings"})
    ingest(synth_store, write_export(recs, "third.json"))
    assert analyze(synth_store, MapAnalyzer(n_epochs=30), progress=False)["reprojected"]
    # relabelled again, but the split is switched off: only the statistics are recomputed
    recs[3]["data"] = json.dumps({"text": json.loads(recs[3]["data"])["text"], "intent": "bill_question"})
    analyze(synth_store, MapAnalyzer(n_epochs=30, cluster_selection_epsilon=0.5, max_cluster_labels=None),
            progress=False)
    ingest(synth_store, write_export(recs, "again.json"))
    again = analyze(synth_store, MapAnalyzer(n_epochs=30, cluster_selection_epsilon=0.5, max_cluster_labels=None),
                    progress=False)
    assert not again["skipped"] and not again["reprojected"]
