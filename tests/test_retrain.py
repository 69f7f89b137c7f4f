"""The retrain step: a new local-model version on the corrected labels, reproducible, kept beside
the old one, its changes on the map, and the `retrain` command."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from hl_debug import mapdata
from hl_debug.cli import cli
from hl_debug.domain import OUT_OF_SCOPE
from hl_debug.errors import ModelError
from hl_debug.signals.registry import evidence
from hl_debug.steps.retrain import retrain, training_mask
from hl_debug.steps.review import record_decisions
from tests.loop_fixtures import loop_store, true_label

KEYS = {"endpoint_before", "endpoint_after", "accuracy_before", "accuracy_after", "delta_low", "delta_high",
        "n_changed"}


@pytest.fixture
def project(tmp_path):
    store, recs, flipped = loop_store(tmp_path)
    yield store, {r["id"]: r for r in recs}, flipped
    store.close()


def fix_flips(store, by_id, flipped):
    for uid in flipped:
        record_decisions(store, [uid], "relabel", true_label(by_id[uid]))


def answers(store, endpoint):
    return store.prediction_columns(("text_hash", "label", "confidence"), endpoint=endpoint)


def test_training_mask_applies_decisions_new_rows_and_out_of_scope():
    usage = ["training", "training", "validation", None, None, "testing"]
    original = ["a", "a", "b", None, None, "b"]
    effective = ["a", OUT_OF_SCOPE, "b", "c", None, "b"]
    assert training_mask(usage, original, effective).tolist() == [True, False, False, True, False, False]


def test_retrain_without_decisions_is_the_pipelines_model(project):
    store, _, _ = project
    first = store.active_endpoint()
    out = retrain(store, n_boot=20)
    assert out["endpoint_after"] == out["endpoint_before"] == first and out["new"] is False
    assert out["n_changed"] == 0 and out["delta_low"] == out["delta_high"] == 0
    assert [v["version"] for v in store.model_versions()] == [1]


def test_retrain_on_fixed_labels_is_a_new_version_beside_the_old(project):
    store, by_id, flipped = project
    v1 = store.active_endpoint()
    fix_flips(store, by_id, flipped)
    out = retrain(store, n_boot=200)
    assert KEYS <= set(out) and out["new"] is True
    assert out["endpoint_before"] == v1 != out["endpoint_after"] == store.active_endpoint()
    assert out["version_before"] == 1 and out["version_after"] == 2 and out["n_decisions"] == len(flipped)
    assert out["accuracy_after"] > out["accuracy_before"] and out["delta_low"] > 0  # the fixes helped
    assert out["n_changed"] > 0 and set(out["views"]) == {"corrected", "original"}
    # both versions' answers and files are kept, each version with its hash, parameters and time
    endpoints = {e["endpoint"]: e for e in store.endpoints()}
    assert {v1, out["endpoint_after"]} <= set(endpoints)
    assert all(len(answers(store, e)["label"]) == 120 for e in (v1, out["endpoint_after"]))
    new = endpoints[out["endpoint_after"]]
    assert new["training_hash"].startswith(out["endpoint_after"].split(":")[1]) and new["trained_at"]
    assert new["parameters"]["C"] == 10.0 and new["based_on"] == v1
    from pathlib import Path

    assert (Path(new["model_dir"]) / "model.joblib").exists()
    assert (Path(endpoints[v1]["model_dir"]) / "model.joblib").exists()


def test_same_decisions_give_the_same_model_and_a_changed_decision_a_new_one(project, tmp_path):
    store, by_id, flipped = project
    fix_flips(store, by_id, flipped)
    first = retrain(store, n_boot=20)
    before = answers(store, first["endpoint_after"])
    again = retrain(store, force=True, n_boot=20)  # fit again from scratch
    assert again["endpoint_after"] == first["endpoint_after"] and again["new"] is False
    assert again["endpoint_before"] == first["endpoint_before"]  # compared with what it was made against
    assert answers(store, again["endpoint_after"]) == before
    # the same decisions in another database give the same version and the same answers
    other, recs, _ = loop_store(tmp_path / "other")
    fix_flips(other, {r["id"]: r for r in recs}, flipped)
    assert retrain(other, n_boot=20)["endpoint_after"] == first["endpoint_after"]
    assert answers(other, first["endpoint_after"]) == before
    other.close()
    # one changed decision: a new version
    record_decisions(store, [flipped[0]], "relabel", "chat_settings" if true_label(by_id[flipped[0]]) != "chat_settings"
                     else "card_issue")
    changed = retrain(store, n_boot=20)
    assert changed["endpoint_after"] != first["endpoint_after"] and changed["version_after"] == 3


def test_out_of_scope_rows_leave_and_newly_labelled_rows_join_the_training_rows(project):
    store, by_id, _ = project
    n0 = retrain(store, n_boot=10)["n_train"]
    train_id = next(i for i, r in by_id.items() if r["usage"] == "training")
    new_id = next(i for i, r in by_id.items() if r["usage"] is None)
    record_decisions(store, [train_id], "out_of_scope")
    assert retrain(store, n_boot=10)["n_train"] == n0 - 1
    record_decisions(store, [new_id], "relabel", true_label(by_id[new_id]))
    assert retrain(store, n_boot=10)["n_train"] == n0


def test_the_map_colours_the_rows_the_retrain_changed(project):
    store, by_id, flipped = project
    fix_flips(store, by_id, flipped)
    out = retrain(store, n_boot=10)
    cols = mapdata.map_columns(store, evidence())
    change = cols["model_change"]
    assert set(change[np.not_equal(change, None)]) <= {"fixed", "broken", "changed"}
    assert int(np.not_equal(change, None).sum()) == out["n_changed_all"] > 0
    assert store.model_change_pair() == (out["endpoint_before"], out["endpoint_after"])


def test_retrain_with_too_few_labels_is_a_model_error(project):
    store, by_id, _ = project
    training = [i for i, r in by_id.items() if r["usage"] == "training"]
    record_decisions(store, training, "out_of_scope")
    with pytest.raises(ModelError):
        retrain(store, n_boot=10)


def test_retrain_command_prints_the_json_the_issue_asks_for(project):
    store, by_id, flipped = project
    fix_flips(store, by_id, flipped)
    runner = CliRunner()
    res = runner.invoke(cli, ["--db", store.path, "retrain", "--format", "json", "--n-boot", "50"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert KEYS <= set(out) and out["delta_low"] <= out["accuracy_after"] - out["accuracy_before"] <= out["delta_high"]
    res = runner.invoke(cli, ["--db", store.path, "retrain", "--n-boot", "50"])
    assert res.exit_code == 0 and "Reused version 2" in res.output and "corrected labels" in res.output
    res = runner.invoke(cli, ["--db", store.path, "retrain", "--against", "nope"])
    assert res.exit_code != 0 and "Hint:" in res.output and "Traceback" not in res.output


def test_training_mask_leaves_out_the_rows_asked():
    usage = ["training", "training", "training"]
    labels = ["a", "b", "a"]
    assert training_mask(usage, labels, labels, leave_out=np.array([False, True, False])).tolist() == [True, False, True]
    with pytest.raises(ValueError, match="leave_out"):
        training_mask(usage, labels, labels, leave_out=np.array([True]))


def test_leave_out_flagged_drops_the_flagged_rows_nobody_reviewed(project):
    from hl_debug.signals.label_issues import ISSUES

    store, by_id, flipped = project
    n0 = retrain(store, n_boot=10)["n_train"]
    train_flips = [i for i in flipped if by_id[i]["usage"] == "training"]
    testing = next(i for i, r in by_id.items() if r["usage"] == "testing")
    assert len(train_flips) >= 4
    # the label-issue signal flags three flipped training rows and a testing row (never a training row anyway)
    store.replace_table(ISSUES, [{"id": i, "rank": k + 1, "flagged": 1, "posterior": 0.9}
                                 for k, i in enumerate([*train_flips[:3], testing])]
                        + [{"id": train_flips[3], "rank": 5, "flagged": 0, "posterior": 0.2}])
    record_decisions(store, [train_flips[0]], "relabel", true_label(by_id[train_flips[0]]))  # reviewed: it stays
    plain = retrain(store, n_boot=10)
    out = retrain(store, n_boot=10, leave_out_flagged=True)
    assert plain["n_train"] == n0 and plain["n_left_out"] == 0
    assert out["n_left_out"] == 2 and out["n_train"] == n0 - 2
    assert out["endpoint_after"] != plain["endpoint_after"]  # another training set, another version
    result = CliRunner().invoke(cli, ["--db", store.path, "retrain", "--leave-out-flagged", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["n_left_out"] == 2
