"""The model report's cache (webapp/model_report.py): computed once per database state and
endpoint, recomputed after a pipeline run or an endpoint switch, never stale."""

from __future__ import annotations

import numpy as np
import pytest

from hl_debug.mapdata import STORED_NAME
from hl_debug.scoring.report import SPLITS, model_report
from hl_debug.storage import Store
from tests.webapp_fixtures import ENDPOINT, PLANTED_ERROR_ID, fill_synthetic
from webapp import create_app
from webapp import model_report as mr
from webapp import warm


@pytest.fixture
def store(db_path, tiny_export_path):
    s = fill_synthetic(Store(db_path), tiny_export_path)
    yield s
    s.close()


@pytest.fixture
def builds(monkeypatch) -> dict[str, int]:
    """How often the cache read the columns and computed a report."""
    counts = {"columns": 0, "report": 0}
    columns, report = mr._columns, mr._report

    def spy_columns(*args, **kwargs):
        counts["columns"] += 1
        return columns(*args, **kwargs)

    def spy_report(*args, **kwargs):
        counts["report"] += 1
        return report(*args, **kwargs)

    monkeypatch.setattr(mr, "_columns", spy_columns)
    monkeypatch.setattr(mr, "_report", spy_report)
    return counts


def predict_all(store: Store, endpoint: str, label: str) -> None:
    """A recorded predict run answering ``label`` for every utterance."""
    with store.run("predict", parameters={"endpoint": endpoint}):
        store.save_predictions(endpoint, [{"text_hash": u["text_hash"], "label": label, "confidence": 0.9,
                                           "distribution": [[label, 0.9]], "entropy": 0.3, "margin": 0.8}
                                          for u in store.utterances()])


def test_columns_match_the_joined_predictions(store):
    """The two aligned reads give the report what ``predictions_df``'s join gave it."""
    store.db.execute("DELETE FROM predictions WHERE rowid IN (SELECT rowid FROM predictions LIMIT 3)")
    store.db.conn.commit()
    df = store.predictions_df(ENDPOINT)
    cols = mr._columns(store, ENDPOINT)
    assert cols["ids"] == df["id"].tolist() and cols["texts"] == df["text"].tolist()
    def plain(column):  # pandas reads some NULLs as NaN
        return [None if v is None or v != v else v for v in df[column].tolist()]

    assert cols["given"] == plain("intent") and cols["usage"] == plain("usage")
    assert cols["predicted"] == plain("label")
    assert cols["predicted"].count(None) >= 3
    np.testing.assert_array_equal(cols["confidence"], df["confidence"].to_numpy(float))
    np.testing.assert_array_equal(cols["entropy"], df["entropy"].to_numpy(float))


def test_report_is_computed_once_per_state(store, builds):
    cache = mr.ReportCache()
    rep = cache.report(store)
    assert cache.report(store) is rep and cache.report(store, ENDPOINT) is rep
    assert cache.cell_ids(store, given="bill_question", predicted="card_issue") == \
        mr.cell_ids(store, given="bill_question", predicted="card_issue")
    assert builds == {"columns": 2, "report": 1}  # one for the cache, one for the uncached cell_ids above
    assert rep == mr.compute(store)


def test_a_pipeline_run_recomputes_the_report(store, builds):
    cache = mr.ReportCache()
    before = cache.report(store)
    predict_all(store, ENDPOINT, "card_issue")  # the active endpoint now answers card_issue everywhere
    after = cache.report(store)
    assert builds["report"] == 2 and after == mr.compute(store) and after != before
    assert after["splits"]["all"]["per_intent"]["card_issue"]["recall"] == 1.0
    assert len(cache.cell_ids(store, given="bill_question", predicted="card_issue", split="all")) == \
        after["splits"]["all"]["per_intent"]["bill_question"]["support"]


def test_a_new_active_endpoint_recomputes_the_report(store, builds):
    cache = mr.ReportCache()
    predict_all(store, "other:model", "chat_settings")
    first = cache.report(store)
    assert first["endpoint"] == ENDPOINT
    store.set_meta("active_endpoint", "other:model")
    switched = cache.report(store)
    assert switched["endpoint"] == "other:model" and switched == mr.compute(store)
    assert switched["splits"]["all"]["per_intent"]["chat_settings"]["recall"] == 1.0


def test_a_decision_leaves_the_report_as_it_is(store, builds):
    """The report scores the model against the export's annotations: a review decision does
    not change it, so it is not recomputed (and still equals a fresh computation)."""
    cache = mr.ReportCache()
    rep = cache.report(store)
    store.add_annotation(PLANTED_ERROR_ID, "relabel", "chat_settings", "bill_question")
    assert cache.report(store) is rep and builds["report"] == 1
    assert rep == mr.compute(store)


def test_report_page_and_confusion_follow_a_new_run(db_path, tiny_export_path):
    s = fill_synthetic(Store(db_path), tiny_export_path)
    client = create_app({"DB": str(db_path), "TESTING": True}).test_client()
    assert '<b id="accuracy">0.833</b>' in client.get("/report").get_data(as_text=True)
    assert client.get("/api/confusion?given=bill_question&predicted=card_issue&split=all").json["n"] == 1
    predict_all(s, ENDPOINT, "card_issue")
    html = client.get("/report").get_data(as_text=True)
    assert '<b id="accuracy">0.833</b>' not in html and '<b id="accuracy">' in html
    body = client.get("/api/confusion?given=bill_question&predicted=card_issue&split=all").json
    assert body["n"] == sum(1 for u in s.utterances() if u["intent"] == "bill_question")
    s.close()


def test_report_every_split_from_one_computation(store, builds):
    cache = mr.ReportCache()
    rep = cache.report(store)
    assert set(rep["splits"]) == set(SPLITS) and builds["report"] == 1
    cols = mr._columns(store, ENDPOINT)
    assert rep == model_report(**cols, endpoint=ENDPOINT, splits=SPLITS, n_pairs=10)


def test_warm_prepares_the_map_and_the_report(db_path, tiny_export_path, monkeypatch):
    fill_synthetic(Store(db_path), tiny_export_path).close()
    app = create_app({"DB": str(db_path), "TESTING": True})
    warm(app).join()
    s = Store(db_path)
    assert s.report(STORED_NAME)["key"]  # kept for the next start
    s.close()
    monkeypatch.setattr(mr, "_columns", lambda *a, **k: pytest.fail("the warmed report was recomputed"))
    monkeypatch.setattr("hl_debug.mapdata.map_columns", lambda *a: pytest.fail("the warmed payload was rebuilt"))
    client = app.test_client()
    assert client.get("/report").status_code == 200
    assert client.get("/api/points", headers={"Accept-Encoding": "gzip"}).status_code == 200
