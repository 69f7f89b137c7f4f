"""Comparing two endpoints: the pure functions (hl_debug.scoring.compare), endpoint names and
aliases, and the `compare` command."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.metrics import f1_score

from hl_debug.cli import cli
from hl_debug.errors import NotFoundError
from hl_debug.scoring.compare import (
    agreement,
    change_kinds,
    compare_answers,
    paired_metrics,
    recovered_share,
    regressions,
)
from hl_debug.steps.compare import aliases, compare_endpoints, resolve_endpoint
from hl_debug.steps.retrain import retrain
from hl_debug.steps.review import record_decisions
from tests.loop_fixtures import loop_store, true_label


def test_change_kinds_tell_fixed_broken_and_changed_among_wrong():
    y = ["a", "a", "a", "b", None, "b"]
    a = ["a", "b", "c", "b", "x", "b"]
    b = ["b", "a", "b", "b", "y", None]
    assert change_kinds(y, a, b).tolist() == ["broken", "fixed", "changed", None, "changed", "broken"]


def test_agreement_counts_rows_both_answered():
    assert agreement(["a", "b", None, "c"], ["a", "c", "a", "c"]) == {"n": 3, "n_same": 2, "agreement": 2 / 3}


def test_paired_metrics_match_sklearn_and_the_interval_covers_the_difference():
    rng = np.random.default_rng(0)
    y = rng.choice(["a", "b", "c"], 400)
    a = np.where(rng.random(400) < 0.7, y, rng.choice(["a", "b", "c"], 400))
    b = np.where(rng.random(400) < 0.9, y, rng.choice(["a", "b", "c"], 400))
    out = paired_metrics(y, a, b, n_boot=500, seed=1)
    assert out["accuracy"]["a"] == pytest.approx(np.mean(a == y))
    assert out["macro_f1"]["b"] == pytest.approx(f1_score(y, b, average="macro"))
    per = f1_score(y, a, average=None, labels=["a", "b", "c"])
    assert [out["per_intent"][k]["f1_a"] for k in "abc"] == pytest.approx(per)
    acc = out["accuracy"]
    assert acc["low"] < acc["delta"] < acc["high"] and acc["low"] > 0  # B is clearly better
    # paired: the interval of the difference is narrower than the two models' own intervals
    same = paired_metrics(y, a, a, n_boot=200)
    assert same["accuracy"]["low"] == same["accuracy"]["high"] == 0


def test_missing_answers_count_as_wrong_and_unlabelled_rows_are_left_out():
    out = paired_metrics(["a", "a", None], ["a", None, "a"], ["a", "a", "b"], n_boot=10)
    assert out["n"] == 2 and out["accuracy"]["a"] == 0.5 and out["accuracy"]["b"] == 1.0


def test_regressions_find_the_cluster_where_b_is_worse_with_fdr_control():
    rng = np.random.default_rng(0)
    n = 600
    groups = np.repeat(np.arange(6), n // 6)
    y = rng.choice(["a", "b"], n)
    a = y.copy()
    b = y.copy()
    flip = (groups == 3) & (rng.random(n) < 0.5)  # B breaks half of cluster 3
    b[flip] = np.where(y[flip] == "a", "b", "a")
    noise = rng.random(n) < 0.03  # and a few rows everywhere, both ways
    a[noise] = np.where(y[noise] == "a", "b", "a")
    out = regressions(y, a, b, groups)
    significant = [g["group"] for g in out if g["significant"]]
    assert significant == [3]
    assert out[0]["group"] == 3 and out[0]["n_broken"] > 30 and out[0]["q_value"] < 1e-6
    assert all(0 <= g["p_value"] <= g["q_value"] <= 1 for g in out)


def test_compare_answers_lists_changed_rows_by_kind():
    out = compare_answers(["a", "a", "b"], ["b", "a", "b"], ["a", "b", "b"], groups=[1, 1, 2], n_boot=10)
    assert out["changes"] == {"fixed": 1, "broken": 1, "changed": 0}
    assert out["changed_rows"] == {"fixed": [0], "broken": [1], "changed": []}
    assert {g["group"] for g in out["groups"]} == {1, 2}


@pytest.mark.parametrize("kwargs, match", [({"n_boot": 0}, "n_boot"), ({"level": 1.5}, "level")])
def test_bad_options_are_value_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        paired_metrics(["a"], ["a"], ["a"], **kwargs)


@pytest.fixture
def two_versions(tmp_path):
    store, recs, flipped = loop_store(tmp_path)
    by_id = {r["id"]: r for r in recs}
    for uid in flipped:
        record_decisions(store, [uid], "relabel", true_label(by_id[uid]))
    retrain(store, n_boot=50)
    yield store
    store.close()


def test_aliases_and_prefixes_name_endpoints(two_versions):
    store = two_versions
    names = aliases(store)
    assert set(names) >= {"v1", "v2", "local", "latest", "previous"}
    assert names["local"] == names["v1"] == names["previous"] and names["latest"] == names["v2"] != names["v1"]
    full = names["v2"]
    assert resolve_endpoint(store, full[:10]) == full  # "local:" + 4 hex digits
    assert resolve_endpoint(store, full.split(":")[1][:6]) == full  # the hash alone
    with pytest.raises(NotFoundError, match="ambiguous") as err:
        resolve_endpoint(store, "local:")
    assert "v1" in err.value.hint
    with pytest.raises(NotFoundError, match="no endpoint 'nope'") as err:
        resolve_endpoint(store, "nope")
    assert "latest" in err.value.hint and full in err.value.hint


def test_compare_endpoints_reports_both_labellings_and_changed_rows(two_versions):
    out = compare_endpoints(two_versions, "v1", "v2", n_boot=100)
    assert set(out["views"]) == {"corrected", "original"}
    assert out["n_changed"] == sum(out["views"]["corrected"]["changes"].values()) > 0
    assert {r["change"] for r in out["rows"]} <= {"fixed", "broken", "changed"}
    assert len(out["rows"]) == out["n_changed"]
    assert all(r["usage"] in ("validation", "testing") for r in out["rows"])
    assert out["agreement"]["n"] == two_versions.count_utterances()
    same = compare_endpoints(two_versions, "latest", "latest", n_boot=10)
    assert same["n_changed"] == 0 and same["agreement"]["agreement"] == 1.0


def test_compare_command_prints_json_and_typed_errors(two_versions):
    runner = CliRunner()
    db = two_versions.path
    res = runner.invoke(cli, ["--db", db, "compare", "v1", "latest", "--format", "json", "--n-boot", "50"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert {"agreement", "per_intent", "regressions"} <= set(out)
    assert set(out["per_intent"]) == {"bill_question", "card_issue", "chat_settings"}
    res = runner.invoke(cli, ["--db", db, "compare", "v1", "latest", "--n-boot", "50"])
    assert res.exit_code == 0 and "Agreement" in res.output and "corrected labels" in res.output
    res = runner.invoke(cli, ["--db", db, "compare", "v1", "v9"])
    assert res.exit_code != 0 and "no endpoint 'v9'" in res.output and "Hint:" in res.output
    assert "Traceback" not in res.output


# -- the web app: /compare and POST /api/retrain ------------------------------------------


@pytest.fixture
def web_db(db_path, tiny_export_path):
    """The web tests' synthetic store (its fake endpoint is the active one) with vectors, so
    the local model can be retrained on it."""
    from hl_debug.steps.embed import embed
    from hl_debug.storage import Store
    from tests.fakes import FakeEncoder
    from tests.webapp_fixtures import fill_synthetic

    store = fill_synthetic(Store(db_path), tiny_export_path)
    embed(store, FakeEncoder(), progress=False)
    store.close()
    return db_path


@pytest.fixture
def client(web_db):
    from webapp import create_app

    return create_app({"DB": str(web_db), "TESTING": True}).test_client()


def test_report_has_the_retrain_button_and_retrain_is_a_json_route(client, web_db):
    from tests.webapp_fixtures import ENDPOINT, PLANTED_ERROR_ID

    page = client.get("/report").get_data(as_text=True)
    assert 'id="retrain-button"' in page and "compare.js" in page and 'href="/compare"' in page  # and the nav link
    assert client.post("/api/annotations", json={"id": PLANTED_ERROR_ID, "action": "relabel",
                                          "label": "chat_settings"}).status_code == 201
    assert client.post("/api/retrain", data="{}").status_code == 415  # JSON only (no cross-site forms)
    res = client.post("/api/retrain", json={"n_boot": 50})
    assert res.status_code == 200, res.json
    out = res.json
    assert out["endpoint_before"] == ENDPOINT and out["endpoint_after"].startswith("local:")
    assert out["n_decisions"] == 1 and KEYS_JSON <= set(out)
    assert client.post("/api/retrain", json={"n_boot": "many"}).status_code == 400
    bad = client.post("/api/retrain", json={"against": "nope"})
    assert bad.status_code == 404 and "Valid endpoints" in bad.json["hint"]
    # /compare defaults to the two versions just compared and shows both labellings
    html = client.get("/compare").get_data(as_text=True)
    assert f'<option value="{ENDPOINT}" selected>' in html and 'data-view="original"' in html
    assert 'id="map-link"' in html and "color=model_change" in html
    picked = client.get(f"/compare?a=latest&b={ENDPOINT}").get_data(as_text=True)
    assert f'<option value="{out["endpoint_after"]}" selected>' in picked
    assert client.get("/compare?a=nope").status_code == 404
    # the map's payload carries how each row changed
    from hl_debug.mapdata import decode_column

    cols = client.get("/api/points").json["columns"]
    change = decode_column(cols["model_change"])
    assert {c for c in change if c} <= {"fixed", "broken", "changed"} and any(change)


KEYS_JSON = {"endpoint_before", "endpoint_after", "accuracy_before", "accuracy_after", "delta_low", "delta_high",
             "n_changed"}


def test_an_endpoint_that_answered_some_rows_is_compared_where_it_answered(two_versions):
    store = two_versions
    rows = store.utterance_rows(["id", "text_hash", "usage"])
    answered = [r for r in rows if r["id"] % 2 == 0]
    store.save_predictions("recorded:api", [{"text_hash": r["text_hash"], "label": "card_issue", "confidence": 1.0,
                                             "distribution": [["card_issue", 1.0]]} for r in answered])
    out = compare_endpoints(store, "recorded", "latest", n_boot=20)
    n_eval = sum(r["usage"] in ("validation", "testing") for r in rows)
    assert out["n_eval"] + out["n_eval_unanswered"]["a"] == n_eval and out["n_eval_unanswered"]["b"] == 0
    assert out["views"]["original"]["n"] == out["n_eval"] == sum(
        r["usage"] in ("validation", "testing") for r in answered)
    assert out["agreement"]["n"] == len(answered)


def test_retrain_without_vectors_is_a_409_with_the_hint(db_path, tiny_export_path):
    """A ModelError (here: no embeddings to train on) is the data's state, not a server
    fault: 409 with the hint, not a 500."""
    from hl_debug.storage import Store
    from tests.webapp_fixtures import fill_synthetic
    from webapp import create_app

    fill_synthetic(Store(db_path), tiny_export_path).close()
    res = create_app({"DB": str(db_path), "TESTING": True}).test_client().post("/api/retrain", json={})
    assert res.status_code == 409, res.json
    assert res.json["error"] and res.json.get("hint")


@pytest.mark.parametrize("exc, status", [
    ("ModelError", 409), ("AnalysisError", 409), ("RetriesExhaustedError", 502),
])
def test_library_errors_map_to_a_status_that_is_not_500(exc, status):
    import hl_debug.errors as errors
    from webapp.errors import status_of

    assert status_of(getattr(errors, exc)("x")) == status


def test_recovered_share_of_the_oracle_gain_with_paired_intervals():
    rng = np.random.default_rng(0)
    n = 4000
    base = rng.random(n) < 0.80
    oracle = base | (rng.random(n) < 0.25)  # fixes a quarter of the errors: +5 pts
    half = base | (oracle & (rng.random(n) < 0.5))  # keeps about half of those fixes
    out = recovered_share(base, half, oracle, n_boot=300, seed=1)
    assert out["oracle_gain"] == pytest.approx(oracle.mean() - base.mean())
    assert out["share"] == pytest.approx((half.mean() - base.mean()) / (oracle.mean() - base.mean()))
    assert out["share_low"] < out["share"] < out["share_high"] and out["share_low"] > 0.35 and out["share_high"] < 0.65
    assert out["oracle_low"] > 0 and out["oracle_positive"] == 1.0
    assert recovered_share(base, oracle, oracle, n_boot=50)["share"] == pytest.approx(1.0)
    assert recovered_share(base, base, oracle, n_boot=50)["share"] == pytest.approx(0.0)
    # an oracle that gains nothing: no share, and no interval to pretend one
    flat = recovered_share(base, half, base, n_boot=50)
    assert flat["share"] is None and flat["share_low"] is None and flat["oracle_positive"] == 0.0
    # groups are resampled within themselves: a group of rows that never change adds no spread
    pad = np.ones(n, dtype=bool)
    grouped = recovered_share(np.r_[base, pad], np.r_[half, pad], np.r_[oracle, pad],
                              groups=np.r_[np.zeros(n), np.ones(n)], n_boot=300, seed=1)
    assert grouped["share"] == pytest.approx(out["share"])
    assert grouped["gain_high"] - grouped["gain_low"] == pytest.approx((out["gain_high"] - out["gain_low"]) / 2,
                                                                        rel=0.25)
    with pytest.raises(ValueError, match="one length"):
        recovered_share(base, half[:-1], oracle)
    with pytest.raises(ValueError, match="groups"):
        recovered_share(base, half, oracle, groups=np.zeros(3))
