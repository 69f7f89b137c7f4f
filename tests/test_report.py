"""Model report on small synthetic predictions with planted confusions."""

from __future__ import annotations

import numpy as np
import pytest

from hl_debug.scoring.report import SPLITS, confusion_cell, model_report, reliability, summary_text


@pytest.fixture
def rows():
    given = ["a"] * 6 + ["b"] * 6 + [None, None]
    usage = ["testing"] * 4 + ["validation"] * 2 + ["testing"] * 4 + ["validation"] * 2 + [None, None]
    predicted = ["a", "a", "a", "b", "a", "a", "b", "b", "b", "b", "b", None, "a", "b"]  # planted: row 3 a->b
    confidence = [0.9, 0.9, 0.8, 0.6, 0.9, 0.9, 0.9, 0.8, 0.9, 0.7, 0.9, np.nan, 0.5, 0.6]
    entropy = [0.1, 0.1, 0.2, 0.6, 0.1, 0.1, 0.1, 0.2, 0.1, 0.3, 0.1, np.nan, 0.9, 0.7]
    n = len(given)
    return dict(ids=list(range(100, 100 + n)), texts=[f"text {i}" for i in range(n)], given=given, usage=usage,
                predicted=predicted, confidence=confidence, entropy=entropy, endpoint="fake:1")


def test_per_intent_metrics_confusion_and_examples(rows):
    rep = model_report(**rows)
    t = rep["splits"]["testing"]
    assert t["n"] == 8 and t["n_scored"] == 8 and t["accuracy"] == pytest.approx(7 / 8)
    assert t["per_intent"]["a"] == {"precision": 1.0, "recall": 0.75, "f1": pytest.approx(6 / 7), "support": 4}
    assert t["per_intent"]["b"]["precision"] == pytest.approx(0.8)
    assert t["confusion"] == {"labels": ["a", "b"], "matrix": [[3, 1], [0, 4]]}
    pair = t["most_confused"][0]
    assert pair["intents"] == ["a", "b"] and pair["count"] == 1 and pair["a->b"] == 1
    assert pair["examples"][0]["id"] == 103  # the planted confusion
    v = rep["splits"]["validation"]
    assert v["n"] == 4 and v["n_scored"] == 3 and v["n_without_prediction"] == 1


def test_rows_without_prediction_are_listed(rows):
    rep = model_report(**rows)
    assert rep["n_without_prediction"] == 1 and rep["without_prediction"][0]["id"] == 111


def test_entropy_by_split_and_intent(rows):
    rep = model_report(**rows)
    assert rep["entropy"]["by_split"]["unassigned"]["n"] == 2
    assert rep["entropy"]["by_split"]["testing"]["q100"] == pytest.approx(0.6)
    # Unannotated rows count under their predicted intent.
    assert rep["entropy"]["by_intent"]["a"]["n"] == 7


def test_reliability_and_ece():
    conf = np.array([0.95] * 20 + [0.55] * 20)
    correct = np.array([True] * 19 + [False] + [True] * 11 + [False] * 9)
    rel = reliability(correct, conf, n_bins=10)
    assert rel["n"] == 40 and len(rel["bins"]) == 2
    assert rel["bins"][1]["accuracy"] == pytest.approx(0.95) and rel["bins"][0]["accuracy"] == pytest.approx(0.55)
    assert rel["ece"] == pytest.approx(0.0, abs=1e-9)
    over = reliability(np.array([False] * 10), np.full(10, 0.9))
    assert over["ece"] == pytest.approx(0.9)


def test_split_selections_evaluation_training_all(rows):
    rep = model_report(**rows, splits=SPLITS)
    assert list(rep["splits"]) == list(SPLITS)
    ev, t, v = rep["splits"]["evaluation"], rep["splits"]["testing"], rep["splits"]["validation"]
    assert ev["n"] == t["n"] + v["n"] == 12 and ev["n_scored"] == 11
    assert ev["confusion"]["matrix"] == np.add(t["confusion"]["matrix"], v["confusion"]["matrix"]).tolist()
    assert rep["splits"]["all"]["n"] == 12  # only annotated rows are scored
    train = rep["splits"]["training"]
    assert train["n"] == 0 and train["accuracy"] is None and train["confusion"] is None
    assert train["most_confused"] == [] and train["calibration"] == {"bins": [], "ece": None, "n": 0}
    # each split has its own reliability curve; the top-level one is the evaluation rows'
    assert t["calibration"]["n"] == 8 and v["calibration"]["n"] == 3
    assert rep["calibration"] == ev["calibration"] and ev["calibration"]["n"] == 11
    # a single name is accepted too, and the default stays testing + validation
    assert list(model_report(**rows, splits="all")["splits"]) == ["all"]
    assert list(model_report(**rows)["splits"]) == ["testing", "validation"]


def test_entropy_histograms_share_bin_edges(rows):
    hist = model_report(**rows, n_entropy_bins=4)["entropy"]["histogram"]
    assert len(hist["edges"]) == 5 and hist["edges"][0] == pytest.approx(0.1) and hist["edges"][-1] == pytest.approx(0.9)
    assert set(hist["counts"]) == {"testing", "validation", "unassigned"}  # splits without rows are left out
    assert {k: sum(c) for k, c in hist["counts"].items()} == {"testing": 8, "validation": 3, "unassigned": 2}
    assert all(len(c) == 4 for c in hist["counts"].values())  # rows with a prediction, on the shared edges
    assert hist["counts"]["validation"] == [3, 0, 0, 0] and hist["counts"]["unassigned"][-1] >= 1


def test_confusion_cell_lists_the_rows_of_one_cell(rows):
    cols = {k: rows[k] for k in ("ids", "given", "usage", "predicted")}
    assert confusion_cell(**cols, given_label="a", predicted_label="b") == [103]
    assert confusion_cell(**cols, given_label="a", predicted_label="a", split="validation") == [104, 105]
    assert confusion_cell(**cols, given_label="b", predicted_label="b", split="all") == [106, 107, 108, 109, 110]
    assert confusion_cell(**cols, given_label="a", predicted_label="b", split="training") == []


def test_summary_text_names_endpoint_and_ece(rows):
    text = summary_text({"endpoints": [model_report(**rows)]})
    assert "fake:1" in text and "accuracy=0.875" in text and "ECE=" in text and "a <-> b" in text


def test_bad_input(rows):
    with pytest.raises(ValueError, match="given has 1 entries but ids has 14"):
        model_report(**{**rows, "given": ["a"]})
    with pytest.raises(ValueError, match=r"confidence values must lie in \[0, 1\]"):
        reliability(np.array([True]), np.array([1.5]))
    with pytest.raises(ValueError, match="n_bins must be >= 1"):
        reliability(np.array([True]), np.array([0.5]), n_bins=0)
    valid = "valid: evaluation, testing, validation, training, all"
    with pytest.raises(ValueError, match=f"unknown split 'prod'; {valid}"):
        model_report(**rows, splits=("testing", "prod"))
    with pytest.raises(ValueError, match=f"unknown split 'prod'; {valid}"):
        confusion_cell(ids=[1], given=["a"], usage=["testing"], predicted=["a"], given_label="a",
                       predicted_label="a", split="prod")
    with pytest.raises(ValueError, match="n_entropy_bins must be >= 1"):
        model_report(**rows, n_entropy_bins=0)
    with pytest.raises(ValueError, match="n_pairs and n_examples must be >= 0"):
        model_report(**rows, n_pairs=-1)
    with pytest.raises(ValueError, match="usage has 2 entries but ids has 1"):
        confusion_cell(ids=[1], given=["a"], usage=["testing", None], predicted=["a"], given_label="a",
                       predicted_label="a")
