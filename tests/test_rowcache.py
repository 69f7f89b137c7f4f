"""The inspector's row cache (``webapp.rowcache``): every row it serves equals the store's
read model (:meth:`Store.inspector_rows`) — after decisions of every kind, after a pipeline
write, past its cap — and the API routes built on it keep their shapes."""

from __future__ import annotations

import json

import pytest

from hl_debug.signals.registry import evidence, get_signal
from hl_debug.storage import Store
from tests.webapp_fixtures import PLANTED_ERROR_ID, fill_synthetic
from webapp import create_app
from webapp.rowcache import RowCache


@pytest.fixture
def web_store(db_path, tiny_export_path):
    s = fill_synthetic(Store(db_path), tiny_export_path)
    yield s
    s.close()


def served(cache: RowCache, store: Store, ids) -> list[dict]:
    return [json.loads(body) for _, body, _ in cache.rows(store, ids, evidence())]


def truth(store: Store, ids) -> list[dict]:
    return store.inspector_rows(ids, evidence=evidence())


def test_rows_equal_the_read_model_through_every_kind_of_decision(web_store):
    ids = web_store.utterance_columns(("id",))["id"]
    cache = RowCache()
    assert cache.warm(web_store, evidence()) == len(ids)
    assert served(cache, web_store, ids) == truth(web_store, ids)
    decisions = [(ids[0], "relabel", "chat_settings"), (ids[1], "skip", None), (ids[2], "accept", "card_issue"),
                 (ids[0], "skip", None),  # a skip after a relabel: the relabel's label stays, the decision is skip
                 (ids[3], "out_of_scope", None), (ids[4], "keep", None), (ids[0], "relabel", "bill_question")]
    for utterance_id, action, label in decisions:
        web_store.add_annotation(utterance_id, action, label, web_store.effective_label(utterance_id))
        assert served(cache, web_store, ids) == truth(web_store, ids), (utterance_id, action)
    assert cache.encoded == len(ids)  # decisions re-encode nothing


def test_a_pipeline_write_re_encodes_and_unknown_ids_are_left_out(web_store):
    cache = RowCache()
    ids = [PLANTED_ERROR_ID, 1000, 10**12, 1001]
    assert [r["id"] for r in served(cache, web_store, ids)] == [PLANTED_ERROR_ID, 1000, 1001]
    assert cache.encoded == 3
    table = get_signal("issues").table
    rows = web_store.table_rows(table)
    web_store.replace_table(table, [{**r, "reason": "rewritten"} for r in rows])
    got = served(cache, web_store, ids)
    assert got == truth(web_store, ids) and {r["issue_reason"] for r in got} == {"rewritten"}
    assert cache.encoded == 6


def test_rows_past_the_cap_are_read_each_time(web_store):
    ids = web_store.utterance_columns(("id",))["id"]
    cache = RowCache(max_rows=5)
    assert cache.warm(web_store, evidence()) == 0  # more rows than the cap: nothing read up front
    served(cache, web_store, ids[:7])
    web_store.add_annotation(ids[-1], "relabel", "card_issue", web_store.effective_label(ids[-1]))
    assert served(cache, web_store, ids) == truth(web_store, ids)
    assert cache.encoded == 5


def test_api_routes_on_the_cache(web_store):
    client = create_app({"DB": web_store.path, "TESTING": True}).test_client()
    got = client.get(f"/api/utterances?ids={PLANTED_ERROR_ID},1000,999999")
    assert got.status_code == 200 and got.mimetype == "application/json"
    body = got.get_json()
    assert [r["id"] for r in body["rows"]] == [1000, PLANTED_ERROR_ID] and body["missing"] == [999999]
    assert body["rows"] == truth(web_store, [1000, PLANTED_ERROR_ID])
    one = client.get(f"/api/utterances/{PLANTED_ERROR_ID}").get_json()
    assert one == {**truth(web_store, [PLANTED_ERROR_ID])[0], "annotations": []}
    cluster = client.get("/api/clusters/2").get_json()
    assert cluster["ids"] == web_store.cluster_member_ids(2)
    assert [r["id"] for r in cluster["minority"]] == [PLANTED_ERROR_ID]
    assert client.get("/api/utterances?ids=999999").status_code == 404


def test_the_start_up_thread_warms_the_rows_and_health_tells_when_it_is_done(web_store):
    app = create_app({"DB": web_store.path, "ROW_WARM_DELAY": 60})
    thread = app.extensions["hl_warm"]
    thread.join(2)
    assert thread.is_alive() and app.extensions["hl_rows"].encoded == 0  # waiting for the first map load
    assert web_store.path not in app.extensions["hl_texts"]._built  # the texts wait too (1M rows: ~4 s of CPU)
    assert app.test_client().get("/api/health").get_json() == {"ok": True, "warming": True}
    assert app.test_client().get("/api/points").status_code == 200  # the map has its data: the rows' turn
    thread.join(60)
    assert not thread.is_alive()
    assert app.extensions["hl_rows"].encoded == len(web_store.utterance_columns(("id",))["id"])
    assert web_store.path in app.extensions["hl_texts"]._built
    assert app.test_client().get("/api/health").get_json() == {"ok": True, "warming": False}
