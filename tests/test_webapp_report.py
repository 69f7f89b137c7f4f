"""The web app's model report (webapp/model_report.py): the one the signals step stored —
never recomputed by the app — and the rows behind each confusion-matrix cell."""

from __future__ import annotations

import pytest

from hl_debug.domain import REPORT_SPLITS
from hl_debug.mapdata import STORED_NAME
from hl_debug.storage import Store
from tests.webapp_fixtures import ENDPOINT, PLANTED_ERROR_ID, fill_synthetic, store_model_report
from webapp import create_app, warm
from webapp import model_report as mr


@pytest.fixture
def store(db_path, tiny_export_path):
    s = fill_synthetic(Store(db_path), tiny_export_path)
    yield s
    s.close()


def predict_all(store: Store, endpoint: str, label: str) -> None:
    """A recorded predict run answering ``label`` for every utterance."""
    with store.run("predict", parameters={"endpoint": endpoint}):
        store.save_predictions(endpoint, [{"text_hash": u["text_hash"], "label": label, "confidence": 0.9,
                                           "distribution": [[label, 0.9]], "entropy": 0.3, "margin": 0.8}
                                          for u in store.utterance_rows(["text_hash"])])


def test_the_report_is_the_stored_one_with_every_split(store):
    rep = mr.ReportCache().report(store)
    stored = store.report("model_report")
    assert rep == stored["endpoints"][0] and rep["endpoint"] == ENDPOINT == stored["active_endpoint"]
    assert list(rep["splits"]) == list(REPORT_SPLITS)
    assert rep == mr.stored_report(store, ENDPOINT)
    assert mr.ReportCache().report(store, "other:model") is None


def test_cell_ids_are_the_confusion_matrix_cells(store):
    rep = mr.ReportCache().report(store)
    for split in REPORT_SPLITS:
        cm = rep["splits"][split]["confusion"]
        for a, given in enumerate(cm["labels"]):
            for b, predicted in enumerate(cm["labels"]):
                ids = mr.cell_ids(store, given=given, predicted=predicted, split=split)
                assert len(ids) == cm["matrix"][a][b], (split, given, predicted)
    with pytest.raises(Exception, match="unknown split"):
        mr.cell_ids(store, given="a", predicted="b", split="prod")


def test_a_signals_run_updates_the_report(store):
    cache = mr.ReportCache()
    before = cache.report(store)
    predict_all(store, ENDPOINT, "card_issue")  # the active endpoint now answers card_issue everywhere
    assert cache.report(store) == before  # the stored report until the signals step runs again
    store_model_report(store)
    after = cache.report(store)
    assert after != before and after["splits"]["all"]["per_intent"]["card_issue"]["recall"] == 1.0
    assert len(cache.cell_ids(store, given="bill_question", predicted="card_issue", split="all")) == \
        after["splits"]["all"]["per_intent"]["bill_question"]["support"]


def test_a_new_active_endpoint_shows_its_stored_report(store):
    cache = mr.ReportCache()
    predict_all(store, "other:model", "chat_settings")
    store_model_report(store)
    assert cache.report(store)["endpoint"] == ENDPOINT
    store.set_meta("active_endpoint", "other:model")
    switched = cache.report(store)
    assert switched["endpoint"] == "other:model"
    assert switched["splits"]["all"]["per_intent"]["chat_settings"]["recall"] == 1.0


def test_a_decision_leaves_the_report_as_it_is(store):
    """The report scores the model against the export's annotations, never the reviews."""
    rep = mr.ReportCache().report(store)
    store.add_annotation(PLANTED_ERROR_ID, "relabel", "chat_settings", "bill_question")
    assert mr.ReportCache().report(store) == rep


def test_report_page_and_confusion_follow_a_new_signals_run(db_path, tiny_export_path):
    s = fill_synthetic(Store(db_path), tiny_export_path)
    client = create_app({"DB": str(db_path), "TESTING": True}).test_client()
    assert '<b id="accuracy">0.833</b>' in client.get("/report").get_data(as_text=True)
    assert client.get("/api/confusion?given=bill_question&predicted=card_issue&split=all").json["n"] == 1
    predict_all(s, ENDPOINT, "card_issue")
    store_model_report(s)
    html = client.get("/report").get_data(as_text=True)
    assert '<b id="accuracy">0.833</b>' not in html and '<b id="accuracy">' in html
    body = client.get("/api/confusion?given=bill_question&predicted=card_issue&split=all").json
    assert body["n"] == sum(1 for u in s.utterance_rows(["intent"]) if u["intent"] == "bill_question")
    s.close()


def test_report_page_without_a_stored_report_says_to_run_signals(store, db_path):
    store.save_report("model_report", None)
    html = create_app({"DB": str(db_path), "TESTING": True}).test_client().get("/report").get_data(as_text=True)
    assert "No model report for" in html and "hl-debug signals" in html


def test_report_page_with_an_older_stored_report(store, db_path):
    """A report stored before every split was kept says to recompute, instead of failing."""
    body = store.report("model_report")
    for rep in body["endpoints"]:
        rep["splits"] = {k: v for k, v in rep["splits"].items() if k in ("testing", "validation")}
    store.save_report("model_report", body)
    client = create_app({"DB": str(db_path), "TESTING": True}).test_client()
    assert '<b id="accuracy">' in client.get("/report?split=testing").get_data(as_text=True)
    html = client.get("/report").get_data(as_text=True)
    assert "evaluation&#39; rows in the stored model report" in html and "--force" in html


def test_warm_prepares_the_map_and_reads_the_report(db_path, tiny_export_path, monkeypatch):
    fill_synthetic(Store(db_path), tiny_export_path).close()
    app = create_app({"DB": str(db_path), "TESTING": True})
    warm(app).join()
    s = Store(db_path)
    assert s.report(STORED_NAME)["key"]  # kept for the next start
    s.close()
    monkeypatch.setattr("hl_debug.mapdata.map_columns", lambda *a: pytest.fail("the warmed payload was rebuilt"))
    client = app.test_client()
    assert client.get("/report").status_code == 200
    assert client.get("/api/points", headers={"Accept-Encoding": "gzip"}).status_code == 200
