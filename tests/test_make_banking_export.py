"""The banking77 benchmark-export generator: determinism, validity, and what it plants."""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from pathlib import Path

import pytest

from hl_debug.steps.ingest import ingest, read_export, validate

_spec = importlib.util.spec_from_file_location(
    "make_banking_export", Path(__file__).resolve().parents[1] / "benchmarks" / "make_banking_export.py")
mbe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mbe)

BANKING77 = Path(__file__).parents[1].parent / "shared" / "data" / "banking77"


@pytest.fixture(scope="module")
def banking():
    """The real banking77 utterances and their intent similarity, computed once."""
    if not (BANKING77 / "train.csv").exists() or not (BANKING77 / "test.csv").exists():
        pytest.skip(f"banking77 CSVs not found at {BANKING77} (the shared data folder beside the repo)")
    utterances = mbe.load_banking77(BANKING77)
    return utterances, mbe.centroid_similarity(utterances)


def _build(banking, **kw):
    utterances, sim = banking
    return mbe.build(utterances, similarity=sim, **kw)


def _given(records):
    return {r["id"]: json.loads(r["data"])["intent"] for r in records}


def test_loads_all_of_banking77(banking):
    utterances, (intents, sim) = banking
    assert len(utterances) == 13_083 and len(intents) == 77
    assert sim.shape == (77, 77)


def test_same_seed_writes_identical_bytes_and_another_seed_differs(banking, tmp_path):
    def run(seed, folder):
        out = tmp_path / folder / "banking.json.zip"
        args = ["--out", str(out), "--seed", str(seed), "--rows", "400", "--flip-rate", "0.05", "--source", str(BANKING77)]
        assert mbe.main(args) == 0
        return out.read_bytes(), mbe.truth_path(out).read_bytes()

    first, again, other = run(3, "a"), run(3, "b"), run(4, "c")
    assert first == again
    assert first[0] != other[0] and first[1] != other[1]


def test_export_validates_and_ingests(banking, tmp_path, store):
    records, truth = _build(banking, seed=1, rows=600, holdout_intents=2, flip_rate=0.05)
    out = tmp_path / "banking.json"
    mbe.write(records, out)
    assert read_export(out) == records
    rows, problems = validate(records)
    assert problems == [] and len(rows) == 600
    counts = ingest(store, out)
    assert counts["n_records"] == 600 and counts["added"] == 600
    assert truth["counts"]["annotated"] == sum(r["complete"] for r in records)


def test_truth_is_consistent_with_the_export(banking):
    records, truth = _build(banking, seed=2, rows=1000, holdout_intents=3, flip_rate=0.1)
    given = _given(records)
    assert set(truth["true_intent"]) == {str(r["id"]) for r in records}
    flipped = {f["id"]: f for f in truth["flips"]}
    for r in records:
        true = truth["true_intent"][str(r["id"])]
        if not r["complete"]:
            assert given[r["id"]] == "" and r["usage"] is None and r["id"] not in flipped
        elif r["id"] in flipped:
            f = flipped[r["id"]]
            assert f["true"] == true != f["given"] == given[r["id"]] and f["usage"] == r["usage"]
        else:
            assert given[r["id"]] == true
    assert {f["given"] for f in truth["flips"]} <= set(truth["in_scope_intents"])


def test_flip_rate_and_uniform_flips(banking):
    records, truth = _build(banking, seed=0, rows=2000, flip_rate=0.1, flip_mode="uniform")
    n_annotated = sum(r["complete"] for r in records)
    assert len(truth["flips"]) == round(0.1 * n_annotated)
    # uniform: spread over many target intents, not one per true intent
    assert len({f["given"] for f in truth["flips"]}) > 40
    assert Counter(f["usage"] for f in truth["flips"]).keys() == {"training", "validation", "testing"}


def test_confusable_flips_go_to_the_designated_neighbour(banking):
    _, uniform = _build(banking, seed=0, rows=2000, flip_rate=0.1, flip_mode="uniform")
    records, conf = _build(banking, seed=0, rows=2000, flip_rate=0.1, flip_mode="confusable")
    neighbours = conf["confusable"]["neighbours"]
    assert set(neighbours) == set(conf["intents"])
    for f in conf["flips"]:
        assert f["given"] == neighbours[f["true"]]["neighbour"] != f["true"]
    # both modes flip the same rows, and a lower rate's flips are a subset of a higher one's
    assert [f["id"] for f in conf["flips"]] == [f["id"] for f in uniform["flips"]]
    _, low = _build(banking, seed=0, rows=2000, flip_rate=0.02, flip_mode="confusable")
    assert {f["id"] for f in low["flips"]} < {f["id"] for f in conf["flips"]}
    # the similarity is word-overlap based: obvious pairs come out as neighbours
    assert neighbours["top_up_reverted"]["neighbour"] == "top_up_failed"
    assert neighbours["card_payment_wrong_exchange_rate"]["neighbour"] == "wrong_exchange_rate_for_cash_withdrawal"


def test_unannotated_and_held_out_shares(banking):
    records, truth = _build(banking, seed=5, rows=1500, unannotated=0.1, holdout_intents=4, flip_rate=0.1,
                            flip_mode="confusable")
    by_id = {r["id"]: r for r in records}
    held = truth["held_out"]
    assert len(held["intents"]) == 4 and set(held["intents"]).isdisjoint(truth["in_scope_intents"])
    held_ids = {i for ids in held["ids"].values() for i in ids}
    assert held_ids == {int(i) for i, k in truth["true_intent"].items() if k in held["intents"]}
    assert all(not by_id[i]["complete"] and by_id[i]["usage"] is None for i in held_ids)
    # no annotated row carries a held-out intent, truly or as a flip target
    given = _given(records)
    assert not {given[r["id"]] for r in records if r["complete"]} & set(held["intents"])
    assert not {truth["true_intent"][str(r["id"])] for r in records if r["complete"]} & set(held["intents"])
    assert set(truth["in_scope_intents"]) <= {f["true"] for f in truth["flips"]} | set(given.values())
    # unannotated share of in-scope rows, disjoint from held-out rows and from flips
    unann = set(truth["unannotated_ids"])
    n_in = len(records) - len(held_ids)
    assert abs(len(unann) - 0.1 * n_in) <= 2
    assert unann.isdisjoint(held_ids) and unann.isdisjoint(f["id"] for f in truth["flips"])
    assert {r["id"] for r in records if not r["complete"]} == unann | held_ids
    # other seeds hold out other intents
    _, other = _build(banking, seed=6, rows=1500, holdout_intents=4)
    assert other["held_out"]["intents"] != held["intents"]


def test_splits_follow_the_shares_and_prefer_banking77_test_rows(banking):
    records, truth = _build(banking, seed=0, rows=3000, splits=(0.7, 0.2, 0.1), flip_rate=0.0)
    annotated = [r for r in records if r["complete"]]
    share = Counter(r["usage"] for r in annotated)
    for usage, want in zip(mbe.USAGES, (0.7, 0.2, 0.1)):
        assert abs(share[usage] / len(annotated) - want) < 0.02
    origin = Counter(truth["origin"][str(r["id"])].split(":")[0] for r in annotated if r["usage"] != "training")
    assert origin["test"] / sum(origin.values()) > 0.6  # test.csv is ~24% of the data
    assert truth["flips"] == []


def test_rows_subsample_is_stratified_and_keeps_every_intent(banking):
    utterances, _ = banking
    full = Counter(u.intent for u in utterances)
    for n in (77, 300):
        records, truth = _build(banking, seed=0, rows=n, unannotated=0.0, flip_rate=0.0)
        kept = Counter(truth["true_intent"].values())
        assert len(records) == n and set(kept) == set(full)
        for intent, c in kept.items():
            assert abs(c - 1 - (n - 77) * (full[intent] - 1) / (len(utterances) - 77)) < 1
    # record order (and so the ids) follows a shuffle, not banking77's intent-grouped CSV order
    ids = [r["id"] for r in records]
    assert len(set(ids)) == len(ids)
    order = [truth["true_intent"][str(i)] for i in ids]
    assert sum(a != b for a, b in zip(order, order[1:])) > 0.9 * (n - 1)


def test_bad_options_are_rejected(banking):
    with pytest.raises(ValueError, match="valid: uniform, confusable"):
        _build(banking, flip_mode="nearest")
    with pytest.raises(ValueError, match="rows must be"):
        _build(banking, rows=50)
    with pytest.raises(ValueError, match="holdout_intents"):
        _build(banking, holdout_intents=76)
