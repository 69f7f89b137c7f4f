"""The map's compact payload (hl_debug/mapdata.py, served by webapp/points.py): every encoding
round-trips, the wire format is the golden payload's, and the cache rebuilds only what changed."""

from __future__ import annotations

import gzip
import json
import math
import re
from pathlib import Path

import pytest

from hl_debug import mapdata
from hl_debug.errors import StoreError
from hl_debug.mapdata import (
    POINT_COLUMNS,
    STORED_NAME,
    GzipHead,
    decode_column,
    encode_categorical,
    encode_numeric,
    encode_points,
    map_columns,
)
from hl_debug.signals.registry import evidence
from hl_debug.storage import POINTS, Store
from tests.webapp_fixtures import PLANTED_ERROR_ID, fill_synthetic
from webapp.points import PayloadCache, TextCache

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "fixtures" / "points_payload.json"


def test_float32_round_trip_with_missing_and_non_finite():
    values = [0.0, -1.5, 3.14159, None, math.nan, math.inf, 1e40]
    col = encode_numeric(values, "float32")
    assert col["dtype"] == "float32"
    out = decode_column(col)
    assert out[:3] == pytest.approx([0.0, -1.5, 3.14159], rel=1e-6)
    assert out[3:] == [None, None, None, None]  # missing, NaN, inf and overflow all read as missing


def test_float16_scores_keep_three_digits():
    values = [0.0, 0.123456, 0.5, 0.999, 2.302585, None]
    out = decode_column(encode_numeric(values, "float16"))
    assert out[:5] == pytest.approx(values[:5], rel=1e-3, abs=1e-4) and out[5] is None


def test_int32_round_trip_and_overflow_falls_back_to_float64():
    col = encode_numeric([5, -1, None, 2**31 - 1], "int32")
    assert col["dtype"] == "int32" and decode_column(col) == [5, -1, None, 2**31 - 1]
    big = [1, 2**40 + 1, None]  # ids beyond int32 are sent exactly, not wrapped
    col = encode_numeric(big, "int32")
    assert col["dtype"] == "float64" and decode_column(col) == big


def test_categorical_codes_and_categories():
    values = ["b", None, "a", "b", "<img src=x onerror=alert(1)>"]
    col = encode_categorical(values)
    assert col["dtype"] == "int8" and col["categories"] == sorted({v for v in values if v})
    assert decode_column(col) == values
    many = [f"intent_{k}" for k in range(300)] + [None]
    col = encode_categorical(many)
    assert col["dtype"] == "int16" and decode_column(col) == many


def test_encode_points_round_trips_every_column():
    columns = {"id": [3, 1, 2], "x": [0.5, None, -2.0], "y": [1.0, None, 3.0],
               "label": ["x", None, "y"], "cluster_id": [0, None, -1], "flagged": [1, 0, None],
               "issue_score": [0.25, None, 1.0]}
    body = json.loads(json.dumps(encode_points(columns)))
    assert body["n"] == 3 and body["has_map"] is True and set(body["columns"]) == set(POINT_COLUMNS)
    out = {k: decode_column(c) for k, c in body["columns"].items()}
    for name, values in columns.items():
        assert out[name] == values, name
    assert out["predicted_label"] == [None] * 3 and out["entropy"] == [None] * 3  # absent columns: all missing


def golden_cases() -> list[dict]:
    return json.loads(GOLDEN.read_text(encoding="utf-8"))["cases"]


@pytest.mark.parametrize("case", golden_cases(), ids=lambda c: c["name"])
def test_encoding_the_golden_input_gives_exactly_the_golden_payload(case):
    """The wire format of /api/points is the fixture's (tests/test_browser.py decodes the same
    payloads in the browser): a change here is a FORMAT bump and a new fixture."""
    assert json.loads(json.dumps(encode_points(case["input"]))) == case["payload"]
    assert case["payload"]["format"] == mapdata.FORMAT
    assert {k: decode_column(c) for k, c in case["payload"]["columns"].items()} == case["expected"]


def test_golden_payload_covers_every_wire_dtype():
    dtypes = {c["dtype"] for case in golden_cases() for c in case["payload"]["columns"].values()}
    assert {"int8", "int32", "float16", "float32", "float64"} <= dtypes
    rows = golden_cases()[0]
    assert set(rows["input"]) == set(POINT_COLUMNS)
    assert all(None in v for name, v in rows["input"].items() if name != "id"), "a missing value each"


def test_ids_travel_as_integers():
    col = encode_points({"id": [5, 2, 9]})["columns"]["id"]
    assert col["dtype"] == "int32" and decode_column(col) == [5, 2, 9]


def test_the_columns_are_declared_once_and_sent_to_the_page():
    from webapp.plots import MAP_COLUMNS, SOURCE_COLUMNS, map_config

    config = map_config(labels=["a", "b"], clusters=[{"cluster_id": 1, "keywords": "k"}], has_predictions=False)
    assert list(config["columns"]) == list(POINT_COLUMNS) and config["format"] == mapdata.FORMAT
    assert config["columns"]["id"] == "int32" and config["columns"]["label"] == "category"
    assert set(MAP_COLUMNS) == set(config["source"]) and {c for c, _ in SOURCE_COLUMNS.values()} <= set(POINT_COLUMNS)
    assert {c["value"] for c in config["color_by"]} == {"label", "cluster_id", "issue_score", "oos_score", "usage",
                                                              "annotated"}
    with_predictions = map_config(labels=[], clusters=[], has_predictions=True)
    assert {"predicted_label", "entropy", "model_change"} <= {c["value"] for c in with_predictions["color_by"]}
    import bokeh

    assert config["bokeh"] == bokeh.__version__ and config["clusters"] == [{"id": 1, "keywords": "k"}]


def test_the_private_bokehjs_hooks_are_written_for_the_pinned_bokeh():
    """static/map/bokeh.js checks the loaded BokehJS against the version its two private hooks
    were written for; that version is the one requirements/constraints.txt pins."""
    pinned = re.search(r"^bokeh==(\S+)", (ROOT / "requirements" / "constraints.txt").read_text(), re.M).group(1)
    js = (ROOT / "webapp" / "static" / "map" / "bokeh.js").read_text(encoding="utf-8")
    assert re.search(r'HOOKED_BOKEH = "([^"]+)"', js).group(1) == pinned
    # both hooks live in privateHooks() and nowhere else
    hooks = js[js.index("// The only place that touches BokehJS internals"):js.index("// The public-API painter")]
    rest = js.replace(hooks, "")
    for private in ("Bokeh.require", "._paint"):
        assert private in hooks and private not in rest
    for other in (ROOT / "webapp" / "static").rglob("*.js"):
        if other.name != "bokeh.js":
            assert "Bokeh.require" not in other.read_text(encoding="utf-8") and "_paint" not in other.read_text(encoding="utf-8"), other


@pytest.fixture
def store(db_path, tiny_export_path):
    s = fill_synthetic(Store(db_path), tiny_export_path)
    yield s
    s.close()


def spy_map_columns(monkeypatch) -> list:
    """Count the pipeline-data reads of the payload cache."""
    calls: list = []
    monkeypatch.setattr(mapdata, "map_columns", lambda *a: calls.append(1) or map_columns(*a))
    return calls


def test_cache_rebuilds_only_what_changed(store, monkeypatch):
    cache, calls = PayloadCache(), spy_map_columns(monkeypatch)
    etag, body = cache.get(store)
    assert cache.get(store) == (etag, body) and cache.etag(store) == etag and len(calls) == 1
    # a decision changes the ETag and the label column, without re-reading the joined rows
    store.add_annotation(PLANTED_ERROR_ID, "relabel", "chat_settings", "bill_question")
    etag2, body2 = cache.get(store)
    cols = {k: decode_column(c) for k, c in json.loads(body2)["columns"].items()}
    k = cols["id"].index(PLANTED_ERROR_ID)
    assert etag2 != etag and len(calls) == 1
    assert (cols["label"][k], cols["intent"][k], cols["decision"][k]) == ("chat_settings", "bill_question", "relabel")
    # a rebuilt derived table (a new analyze run) re-reads everything
    store.replace_table(POINTS, [{**r, "x": 0.0} for r in store.table_rows(POINTS)])
    etag3, body3 = cache.get(store)
    assert etag3 != etag2 and len(calls) == 2
    assert set(decode_column(json.loads(body3)["columns"]["x"])) == {0.0}


def test_cache_gzipped_body_is_the_same_json(store, monkeypatch):
    cache, calls = PayloadCache(), spy_map_columns(monkeypatch)
    etag, plain = cache.get(store)
    etag_gz, zipped = cache.get(store, gzipped=True)
    assert etag_gz == etag and gzip.decompress(zipped) == plain and len(zipped) < len(plain)
    # after a decision the gzip stream continues from the cached base: still one valid member
    store.add_annotation(PLANTED_ERROR_ID, "relabel", "chat_settings", "bill_question")
    etag2, zipped2 = cache.get(store, gzipped=True)
    assert etag2 != etag and len(calls) == 1
    assert gzip.decompress(zipped2) == cache.get(store)[1] and decoded(cache.get(store)[1]) == plain_body(store)
    assert zipped2[:len(zipped) // 2] == zipped[:len(zipped) // 2]  # the base's bytes are reused


def decoded(body: bytes) -> dict:
    payload = json.loads(body)
    return {**payload, "columns": {k: decode_column(c) for k, c in payload["columns"].items()}}


def plain_body(store) -> dict:
    """The payload built from :meth:`Store.map_columns`' joined read (how the map's data is defined), decoded."""
    have = store.inspector_columns(evidence())  # oos_score only once the out-of-scope signal is installed
    columns = store.map_columns([c for c in POINT_COLUMNS if c in have], evidence=evidence())
    return decoded(json.dumps(encode_points(columns, mapdata.data_key(store.map_state()))).encode())


def test_map_columns_match_the_joined_read(store):
    """Table-by-table reads aligned by id and text hash give what one joined query gives,
    including rows missing from points, issues and predictions, and decisions."""
    store.db.execute("DELETE FROM points WHERE id IN (SELECT id FROM points ORDER BY id LIMIT 3)")
    store.db.execute("DELETE FROM issues WHERE id IN (SELECT id FROM issues ORDER BY id DESC LIMIT 2)")
    store.db.execute("DELETE FROM predictions WHERE rowid IN (SELECT rowid FROM predictions LIMIT 4)")
    store.db.conn.commit()
    store.add_annotation(PLANTED_ERROR_ID, "relabel", "chat_settings", "bill_question")
    store.add_annotation(1003, "skip", None, None)
    store.add_annotation(1004, "relabel", None, None)  # a decision without a label keeps the intent
    body = decoded(PayloadCache().get(store)[1])
    assert body == plain_body(store)
    cols = body["columns"]
    assert cols["x"][:3] == [None] * 3 and cols["issue_score"][-2:] == [None] * 2
    assert cols["predicted_label"].count(None) >= 4


def test_map_columns_before_analysis_and_without_predictions(db_path, tiny_export_path):
    store = fill_synthetic(Store(db_path), tiny_export_path, with_analysis=False)
    body = json.loads(PayloadCache().get(store)[1])
    assert body["n"] == 24 and body["has_map"] is False
    assert set(decode_column(body["columns"]["predicted_label"])) == {None}
    store.close()


def test_warm_builds_the_payload_before_the_first_request(store, monkeypatch):
    cache = PayloadCache()
    cache.warm(store.path).join()
    monkeypatch.setattr(mapdata, "map_columns", lambda *a: pytest.fail("the warmed payload was rebuilt"))
    etag, zipped = cache.get(store, gzipped=True)
    assert json.loads(gzip.decompress(zipped))["n"] == 24


def test_warm_without_a_database_does_nothing(tmp_path):
    PayloadCache().warm(str(tmp_path / "none.db")).join()
    assert not (tmp_path / "none.db").exists()


def test_prepare_stores_the_base_and_the_next_start_reads_it_back(store, monkeypatch):
    """What ``hl-debug serve``'s start-up thread keeps in the database lets the next start
    skip the rebuild, and storing it does not change the map's ETag."""
    first = PayloadCache()
    etag, zipped = first.get(store, gzipped=True)
    assert store.report(STORED_NAME) is None  # a request never writes
    first.prepare(store)
    assert store.report(STORED_NAME)["key"] and first.etag(store) == etag
    calls = spy_map_columns(monkeypatch)
    restarted = PayloadCache()
    assert restarted.get(store, gzipped=True) == (etag, zipped) and calls == []
    store.add_annotation(PLANTED_ERROR_ID, "relabel", "chat_settings", "bill_question")  # the overlay still works
    assert decoded(restarted.get(store)[1]) == plain_body(store) and calls == []
    restarted.prepare(store)  # read back, so nothing to store again
    assert calls == []


@pytest.mark.parametrize("tail", [b"", b'"label":{}}}', bytes(range(256)) * 300])
def test_a_gzip_head_continued_by_any_tail_is_one_valid_member(tail):
    prefix = b'{"format":5,"columns":{"text":' + json.dumps([f"utterance {i}" for i in range(5000)]).encode() + b","
    head = GzipHead.of(prefix)
    member = head.member(tail)
    assert gzip.decompress(member) == prefix + tail and member == head.member(tail)  # deterministic
    assert len(member) < len(prefix + tail) and member.startswith(head.data)


def test_the_next_start_serves_gzip_without_compressing_the_base_again(store, monkeypatch):
    """The web step keeps the base's gzip head with it (2.6 s of compression at 1M rows), so
    a restarted app's first gzipped body costs only the overlay's compression."""
    first = PayloadCache()
    etag, zipped = first.get(store, gzipped=True)
    first.prepare(store)
    kept = mapdata.BasePayload.from_stored(store.report(STORED_NAME))
    assert kept.gzip_head is not None and kept.gzip_head.size == len(kept.prefix)
    monkeypatch.setattr(GzipHead, "of", classmethod(lambda *a: pytest.fail("the kept gzip head was recompressed")))
    restarted = PayloadCache()
    assert restarted.get(store, gzipped=True) == (etag, zipped)
    store.add_annotation(PLANTED_ERROR_ID, "relabel", "chat_settings", "bill_question")  # a decision: a new tail
    etag2, zipped2 = restarted.get(store, gzipped=True)
    assert etag2 != etag and gzip.decompress(zipped2) == restarted.get(store)[1]


def test_a_base_kept_without_a_gzip_head_gets_one_at_the_next_keep(store, monkeypatch):
    """A database kept before the gzip head was: still read back (no rebuild), compressed
    on first use, and kept with its head by the start-up thread's prepare."""
    PayloadCache().prepare(store)
    doc = store.report(STORED_NAME)
    del doc["gzip"]
    store.save_cache(STORED_NAME, doc)
    calls = spy_map_columns(monkeypatch)
    cache = PayloadCache()
    etag, zipped = cache.get(store, gzipped=True)
    assert calls == [] and gzip.decompress(zipped) == cache.get(store)[1]
    cache.prepare(store)
    assert store.report(STORED_NAME)["gzip"]["data"] and calls == []


def test_a_stored_base_of_an_earlier_state_is_ignored(store, monkeypatch):
    PayloadCache().prepare(store)
    store.replace_table(POINTS, [{**r, "x": 0.0} for r in store.table_rows(POINTS)])  # a new analyze run
    calls = spy_map_columns(monkeypatch)
    body = decoded(PayloadCache().get(store)[1])
    assert calls == [1] and set(body["columns"]["x"]) == {0.0} and body == plain_body(store)


def test_a_database_that_cannot_be_written_only_costs_the_next_start(store, monkeypatch, caplog):
    def refuse(*args, **kwargs):
        raise StoreError("attempt to write a readonly database")

    monkeypatch.setattr(store, "save_cache", refuse)
    caplog.set_level("INFO", logger="webapp.points")
    cache = PayloadCache()
    etag, body = cache.get(store)
    cache.prepare(store)  # logs, does not raise
    assert "could not keep the map's data" in caplog.text and cache.get(store) == (etag, body)


def test_the_map_page_preloads_every_map_module():
    html = (ROOT / "webapp" / "templates" / "map.html").read_text(encoding="utf-8")
    modules = {p.relative_to(ROOT / "webapp" / "static").as_posix() for p in (ROOT / "webapp" / "static" / "map").glob("*.js")}
    assert modules and all(f"'{m}'" in html for m in modules | {"map.js", "raster.js"})


def test_the_texts_travel_apart_in_the_payloads_row_order(store):
    """/api/points has no texts (the map is drawn without them); /api/points/text has every
    row's, in the payload's row order, under the same data key."""
    payload = json.loads(PayloadCache().get(store)[1])
    assert "text" not in payload["columns"] and "text" not in POINT_COLUMNS
    key, body = TextCache().get(store)
    texts = json.loads(body)
    assert texts["key"] == payload["key"] == key and texts["n"] == payload["n"]
    ids = decode_column(payload["columns"]["id"])
    by_id = dict(zip(store.map_columns(["id"])["id"], store.map_columns(["text"])["text"], strict=True))
    assert decode_column(texts["columns"]["text"]) == [by_id[i] for i in ids]


def test_the_texts_are_kept_for_the_next_start_and_an_earlier_states_are_ignored(store, monkeypatch):
    """A start that builds the texts keeps their gzip (1M rows: ~4 s of CPU the next start,
    which would run beside the first page's paint, skips); a kept body of an earlier state is
    not served; a database that cannot be written only costs the next start the build."""
    key, zipped = TextCache().get(store, gzipped=True)
    assert mapdata.stored_texts(store, key) == zipped
    reads = []
    monkeypatch.setattr(mapdata, "map_texts", lambda s: reads.append(1) or store.map_columns(["text"])["text"])
    restarted = TextCache()
    assert restarted.get(store, gzipped=True) == (key, zipped) and reads == []
    assert gzip.decompress(zipped) == restarted.get(store)[1]
    store.replace_table(POINTS, [{**r, "x": 0.0} for r in store.table_rows(POINTS)])  # a new analyze run
    key2, zipped2 = TextCache().get(store, gzipped=True)
    assert key2 != key and reads == [1] and mapdata.stored_texts(store, key) is None
    assert mapdata.stored_texts(store, key2) == zipped2 and json.loads(gzip.decompress(zipped2))["key"] == key2

    def refuse(*args, **kwargs):
        raise StoreError("attempt to write a readonly database")

    store.replace_table(POINTS, [{**r, "x": 1.0} for r in store.table_rows(POINTS)])
    monkeypatch.setattr(store, "save_cache", refuse)
    key3, body3 = TextCache().get(store)
    assert key3 not in (key, key2) and json.loads(body3)["key"] == key3 and reads == [1, 1]


def test_the_text_cache_follows_the_pipeline_data_not_the_decisions(store, monkeypatch):
    cache, reads = TextCache(), []
    monkeypatch.setattr(mapdata, "map_texts", lambda s: reads.append(1) or store.map_columns(["text"])["text"])
    key, zipped = cache.get(store, gzipped=True)
    assert json.loads(gzip.decompress(zipped)) == json.loads(cache.get(store)[1]) and len(reads) == 1
    store.add_annotation(PLANTED_ERROR_ID, "relabel", "chat_settings", "bill_question")
    assert cache.get(store)[0] == key and len(reads) == 1  # a decision changes no text
    store.replace_table(POINTS, [{**r, "x": 0.0} for r in store.table_rows(POINTS)])
    assert cache.get(store)[0] != key and len(reads) == 2
