"""The map's compact payload (webapp/points.py): every encoding round-trips, and the cache
rebuilds only what changed."""

from __future__ import annotations

import gzip
import json
import math

import pytest

from hl_debug.store import Store
from tests.webapp_fixtures import PLANTED_ERROR_ID, fill_synthetic
from webapp.points import (POINT_COLUMNS, PayloadCache, decode_column, encode_categorical, encode_numeric,
                           encode_points)


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
    columns = {"id": [3, 1, 2], "x": [0.5, None, -2.0], "y": [1.0, None, 3.0], "text": ["a\nb", "ü", '"q"'],
               "label": ["x", None, "y"], "cluster_id": [0, None, -1], "flagged": [1, 0, None],
               "issue_score": [0.25, None, 1.0]}
    body = json.loads(json.dumps(encode_points(columns)))
    assert body["n"] == 3 and body["has_map"] is True and set(body["columns"]) == set(POINT_COLUMNS)
    out = {k: decode_column(c) for k, c in body["columns"].items()}
    for name, values in columns.items():
        assert out[name] == values, name
    assert out["predicted_label"] == [None] * 3 and out["entropy"] == [None] * 3  # absent columns: all missing


@pytest.fixture
def store(db_path, tiny_export_path):
    s = fill_synthetic(Store(db_path), tiny_export_path)
    yield s
    s.close()


def test_cache_rebuilds_only_what_changed(store, monkeypatch):
    cache, calls = PayloadCache(), []
    web_rows = store.web_rows
    monkeypatch.setattr(store, "web_rows", lambda **kw: calls.append(kw) or web_rows(**kw))
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
    store.replace_rows("points", [{**r, "x": 0.0} for r in store.rows("points")])
    etag3, body3 = cache.get(store)
    assert etag3 != etag2 and len(calls) == 2
    assert set(decode_column(json.loads(body3)["columns"]["x"])) == {0.0}


def test_cache_gzipped_body_is_the_same_json(store):
    cache = PayloadCache()
    etag, plain = cache.get(store)
    etag_gz, zipped = cache.get(store, gzipped=True)
    assert etag_gz == etag and gzip.decompress(zipped) == plain and len(zipped) < len(plain)


def test_warm_builds_the_payload_before_the_first_request(store, monkeypatch):
    cache = PayloadCache()
    cache.warm(store.path).join()
    monkeypatch.setattr(store, "web_rows", lambda **kw: pytest.fail("the warmed payload was rebuilt"))
    etag, zipped = cache.get(store, gzipped=True)
    assert json.loads(gzip.decompress(zipped))["n"] == 24


def test_warm_without_a_database_does_nothing(tmp_path):
    PayloadCache().warm(str(tmp_path / "none.db")).join()
    assert not (tmp_path / "none.db").exists()
