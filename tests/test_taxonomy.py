"""The taxonomy advisor on tiny synthetic data: a planted merge, a planted split and a
planted boundary are found; the export has its columns; a rule's violators are the minority."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from click.testing import CliRunner

from hl_debug.cli import cli
from hl_debug.scoring.taxonomy import (
    confusion_counts,
    distinctness,
    merge_candidates,
    pair_overlap,
    rate_matrix,
    split_candidates,
    symmetric,
)
from hl_debug.scoring.taxonomy_findings import rank_findings
from hl_debug.scoring.taxonomy_rules import TermStats, boundary_rule, guideline
from hl_debug.signals.context import SignalContext
from hl_debug.signals.taxonomy import TAXONOMY, Taxonomy
from hl_debug.steps.embed import embed
from hl_debug.steps.ingest import ingest
from hl_debug.steps.signals import signals
from tests.fakes import FakeEncoder

TOPICS = {
    "accounts": "account open close joint holder owner branch manager signature form",
    "travel": "flight hotel trip abroad airport luggage passport beach resort holiday",  # -> travel / trips
    "pets": "dog cat puppy kitten leash vet bark purr fur collar",  # -> half of "mixed"
    "cars": "engine tyre brake garage mechanic gearbox clutch exhaust diesel bonnet",  # -> other half of "mixed"
    "weather": "rain snow sunny cloudy forecast storm wind temperature humid frost",
    "credit": "increase raise higher maximum spending ceiling allowance extend bigger boost",
    "finances": "balance debt owe statement savings budget net worth overdraft deposit",
}
VIOLATORS = 3  # finances rows worded like credit-limit questions


def synthetic(seed: int = 0) -> tuple[list[str], list[str]]:
    """(texts, labels): a planted merge (travel/trips share one topic), a planted split
    ("mixed" = pets + cars) and a planted boundary (3 finances rows say "limit")."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []

    def add(topic: str, label: str, n: int, extra: str | None = None) -> None:
        words = TOPICS[topic].split()
        # every intent but the planted split's halves shares a word, as a domain's intents do
        common = [] if topic in ("pets", "cars") else ["please"]
        for _ in range(n):
            picked = list(rng.choice(words, 3 if extra else 4, replace=False))
            texts.append(" ".join(common + ([extra] if extra else []) + picked))
            labels.append(label)

    add("accounts", "accounts", 30)
    for _ in range(60):
        add("travel", str(rng.choice(["travel", "trips"])), 1)
    add("pets", "mixed", 30)
    add("cars", "mixed", 30)
    add("weather", "weather", 30)
    add("credit", "credit", 30, extra="limit")
    add("finances", "finances", 30)
    add("credit", "finances", VIOLATORS, extra="limit")
    return texts, labels


@pytest.fixture(scope="module")
def data():
    texts, labels = synthetic()
    X = FakeEncoder(dim=256).transform(texts)
    return texts, labels, X


@pytest.fixture(scope="module")
def result(data):
    texts, labels, X = data
    ctx = SignalContext(ids=np.arange(1, len(texts) + 1), texts=texts, vectors=X, labels=labels,
                        splits=["training"] * len(texts))
    return Taxonomy().find(ctx)


# -- pure functions ----------------------------------------------------------------------


def test_rate_matrix_is_directional_and_symmetric_averages_both_ways():
    R = rate_matrix([0, 0, 0, 0, 1, 1], [0, 0, 1, -1, 1, 0], n_classes=2)
    assert R[0].tolist() == pytest.approx([2 / 3, 1 / 3])  # the row without an answer is left out
    assert R[1].tolist() == pytest.approx([0.5, 0.5])
    S = symmetric(R)
    assert S[0, 1] == S[1, 0] == pytest.approx((1 / 3 + 0.5) / 2) and S[0, 0] == 0
    assert confusion_counts([0, 0, 0, 0, 1, 1], [0, 0, 1, -1, 1, 0], n_classes=2)[0, 1] == 2


def test_distinctness_reads_as_a_share_of_intent_pairs():
    assert distinctness(0.1, np.array([0.2, 0.3, 0.4, 0.05])) == 0.75
    assert distinctness(0.3, np.array([0.3])) == 0.5 and distinctness(0.3, np.array([])) == 0.0


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="class indices"):
        rate_matrix(["a"], [0], n_classes=1)
    with pytest.raises(ValueError, match="at least one of"):
        pair_overlap([0, 1], n_classes=2)
    with pytest.raises(ValueError, match="pred_probs must have shape"):
        pair_overlap([0, 1], n_classes=2, pred_probs=np.ones((2, 3)) / 3)


# -- planted findings --------------------------------------------------------------------


def test_planted_merge_is_the_top_pair(result):
    top = result.report["merge"][0]
    assert {top["intent_a"], top["intent_b"]} == {"travel", "trips"}
    assert top["score"] >= 0.25 > result.report["merge"][1]["score"]  # only the planted pair is a merge
    merges = [r for r in result.rows if r["kind"] == "merge"]
    assert [(r["intent_a"], r["intent_b"]) for r in merges] == [("travel", "trips")]
    assert "near-identical pairs labelled differently" in merges[0]["evidence"]
    texts, labels = synthetic()
    for id_a, id_b, sim in top["pairs"]:  # ids are 1-based positions here
        assert {labels[id_a - 1], labels[id_b - 1]} == {"travel", "trips"} and sim > 0.5


def test_planted_split_is_the_top_intent(result):
    top = result.report["split"][0]
    assert top["intent"] == "mixed" and top["score"] >= 0.5
    assert all(s["score"] < 0.5 for s in result.report["split"][1:])
    pets, cars = set(TOPICS["pets"].split()), set(TOPICS["cars"].split())
    words = [set(" ".join(g["keywords"]).split()) for g in top["groups"]]
    assert (words[0] <= pets and words[1] <= cars) or (words[0] <= cars and words[1] <= pets)
    assert sorted(g["size"] for g in top["groups"]) == [30, 30]
    split = next(r for r in result.rows if r["kind"] == "split")
    assert split["intent_a"] == "mixed" and split["intent_b"] is None


def test_boundary_rule_names_the_contrast_words_and_its_violators_are_the_minority(data, result):
    texts, labels, X = data
    classes = sorted(set(labels))
    y = np.array([classes.index(v) for v in labels])
    a, b = classes.index("credit"), classes.index("finances")
    rule = boundary_rule(TermStats.fit(texts, y, len(classes)), y, a, b, classes)
    assert rule["terms_a"][0]["term"] == "limit"
    assert all(t["term"] in TOPICS["finances"].split() for t in rule["terms_b"])
    assert rule["guideline"].startswith("mentions limit") and "-> credit; mentions " in rule["guideline"]
    planted = set(range(len(texts) - VIOLATORS, len(texts)))
    assert set(rule["violators"]) == planted  # exactly the finances rows that say "limit"
    assert len(rule["violators"]) < rule["n_follow"] and rule["agreement"] > 0.9
    row = next(r for r in result.rows if r["kind"] == "boundary" and {r["intent_a"], r["intent_b"]} ==
               {"credit", "finances"})
    assert sorted(json.loads(row["ids"])) == sorted(i + 1 for i in planted) and row["n_rows"] == VIOLATORS


def test_guideline_without_words():
    assert guideline("a", "b", [], []) == "no wording separates a from b"


def test_findings_are_ordered_by_rows_in_question(result):
    assert [r["rank"] for r in result.rows] == list(range(1, len(result.rows) + 1))
    n = [r["n_rows"] for r in result.rows]
    assert n == sorted(n, reverse=True)
    assert {r["kind"] for r in result.rows} == {"merge", "split", "boundary"}
    fake = [{"kind": "boundary", "intent_a": "a", "intent_b": "b", "score": 0.1, "n_rows": 2, "ids": [1]},
            {"kind": "split", "intent_a": "c", "intent_b": None, "score": 0.9, "n_rows": 5, "ids": [2]}]
    assert [r["kind"] for r in rank_findings(fake)] == ["split", "boundary"]


def test_report_holds_the_overlap_matrix_for_a_heatmap(result):
    rep = result.report
    K = len(rep["classes"])
    for src in ("score", "confident_learning", "out_of_fold", "neighbors"):
        M = np.array(rep["overlap"][src], dtype=float)
        assert M.shape == (K, K) and np.allclose(M, M.T) and (np.diag(M) == 0).all()
    i, j = rep["classes"].index("travel"), rep["classes"].index("trips")
    assert rep["overlap"]["score"][i][j] == pytest.approx(rep["merge"][0]["score"], abs=1e-4)


def test_merge_candidates_need_matching_shapes():
    with pytest.raises(ValueError, match="must be"):
        merge_candidates({"score": np.zeros((2, 2))}, ["a", "b", "c"])


def test_split_candidates_skip_small_intents(data):
    texts, labels, X = data
    classes = sorted(set(labels))
    y = np.array([classes.index(v) for v in labels])
    out = split_candidates(X, y, texts, classes, min_group_size=25)
    assert [s["intent"] for s in out] == ["mixed"] and out[0]["score"] > 0.5  # the only intent with 2 * 25 rows


def test_split_candidates_in_row_blocks_match_one_block(data, monkeypatch):
    """At scale the rows are converted to float64 a block at a time; the answer is the same."""
    import hl_debug.scoring.taxonomy as tax

    texts, labels, X = data
    classes = sorted(set(labels))
    y = np.array([classes.index(v) for v in labels])
    whole = split_candidates(X, y, texts, classes)
    monkeypatch.setattr(tax, "_BLOCK_ROWS", 13)
    blocked = split_candidates(X, y, texts, classes)
    assert [(s["intent"], [g["rows"] for g in s["groups"]]) for s in blocked] == \
        [(s["intent"], [g["rows"] for g in s["groups"]]) for s in whole]
    np.testing.assert_allclose([s["score"] for s in blocked], [s["score"] for s in whole], rtol=1e-12)
    assert [[g["spread"] for g in s["groups"]] for s in blocked] == [[g["spread"] for g in s["groups"]] for s in whole]


def test_split_candidates_on_positions_into_a_larger_matrix_match_the_copied_subset(data):
    """The signal passes every utterance's vectors with the labelled rows' positions (no
    copy); the answer is the one of the copied subset, positions still 0..n-1."""
    texts, labels, X = data
    classes = sorted(set(labels))
    y = np.array([classes.index(v) for v in labels])
    rng = np.random.default_rng(3)
    full = rng.normal(size=(3 * len(X), X.shape[1])).astype(X.dtype)  # unlabelled rows around them
    at = np.sort(rng.choice(len(full), size=len(X), replace=False))
    full[at] = X
    copied = split_candidates(X, y, texts, classes)
    viewed = split_candidates(full, y, texts, classes, rows=at)
    assert copied and [(s["intent"], s["score"], [g["rows"] for g in s["groups"]]) for s in viewed] == \
        [(s["intent"], s["score"], [g["rows"] for g in s["groups"]]) for s in copied]
    with pytest.raises(ValueError, match="one entry per row"):
        split_candidates(full, y, texts, classes, rows=at[:-1])
    with pytest.raises(ValueError, match="positions into X"):
        split_candidates(full, y, texts, classes, rows=np.r_[at[:-1], len(full)])


def _small_meaning_in_a_large_intent(seed: int = 0):
    """A 200-row intent with a 24-row second meaning far from it, and five 60-row intents
    (unnormalised centres: the rows are L2-normalised at the end)."""
    rng = np.random.default_rng(seed)
    dim = 32
    centers = np.eye(dim)
    centers[[0, *range(2, 7)]] += centers[31]  # the intents share a domain; the small meaning lies outside it
    rows, labels, texts = [], [], []
    for n, label, c in [(200, "big", 0), (24, "big", 1)] + [(60, f"c{k}", k) for k in range(2, 7)]:
        rows.append(centers[c] + 0.35 * rng.normal(size=(n, dim)) / np.sqrt(dim))
        labels += [label] * n
        texts += [f"word{c} filler {i % 7}" for i in range(n)]
    X = np.vstack(rows)
    classes = sorted(set(labels))
    return X / np.linalg.norm(X, axis=1, keepdims=True), np.array([classes.index(v) for v in labels]), texts, classes


def test_split_floor_is_capped_at_a_share_of_the_median_intent():
    X, y, texts, classes = _small_meaning_in_a_large_intent()
    capped = {s["intent"]: s for s in split_candidates(X, y, texts, classes, floor_cap=0.15)}
    uncapped = {s["intent"]: s for s in split_candidates(X, y, texts, classes)}  # the signal's default: no cap
    # the floor of 20% of big's 224 rows (45) hides its 24-row meaning; 15% of the median intent (60) does not
    assert uncapped["big"]["score"] == 0.0
    assert capped["big"]["score"] > 0.9 and sorted(g["size"] for g in capped["big"]["groups"]) == [24, 200]
    assert max(capped, key=lambda k: capped[k]["score"]) == "big"
    assert all(capped[k]["score"] < 0.5 for k in capped if k != "big")


def test_too_little_data_gives_no_findings():
    ctx = SignalContext(ids=[1, 2, 3], texts=["a b", "c d", "e f"], vectors=np.eye(3, dtype=np.float32),
                        labels=["x", "y", None], splits=[None] * 3)
    res = Taxonomy().find(ctx)
    assert res.rows == [] and res.counts["n_taxonomy_findings"] == 0


# -- the export --------------------------------------------------------------------------


def test_export_taxonomy_csv(store, write_export, db_path):
    texts, labels = synthetic()
    records = [{"id": 100 + i, "project_id": 1, "complete": True, "usage": "training", "score": 0.0,
                "data": json.dumps({"text": t, "intent": lab})} for i, (t, lab) in enumerate(zip(texts, labels))]
    ingest(store, write_export(records))
    embed(store, FakeEncoder(dim=256), progress=False)
    counts = signals(store, progress=False)
    assert counts["n_taxonomy_findings"] == len(store.table_rows(TAXONOMY)) > 0
    r = CliRunner().invoke(cli, ["--db", str(db_path), "export", "taxonomy", "--format", "csv"], obj={})
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(io.StringIO(r.output)))
    assert tuple(rows[0])[:6] == ("rank", "kind", "intent_a", "intent_b", "score", "n_rows")
    assert {"evidence", "advice", "ids"} <= set(rows[0])
    assert [int(x["rank"]) for x in rows] == list(range(1, len(rows) + 1))
    assert {x["kind"] for x in rows} == {"merge", "split", "boundary"}
    assert all(x["intent_b"] == "" for x in rows if x["kind"] == "split")
    assert all(min(json.loads(x["ids"])) >= 100 for x in rows)  # utterance ids, not positions
    assert store.report("taxonomy")["classes"] == sorted(set(labels))
