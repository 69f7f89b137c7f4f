"""The storage module: schema, runs, caches, transactions."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from hl_debug.errors import MissingStepError, SchemaVersionError, StoreError
from hl_debug.storage import SCHEMA_VERSION, Store


def test_new_database_records_schema_version(store):
    assert store.schema_version == SCHEMA_VERSION
    for table in ("utterances", "runs", "predictions", "embeddings", "annotations", "reports"):
        assert store.db[table].exists()


def test_newer_schema_is_refused(db_path):
    Store(db_path).set_meta("schema_version", str(SCHEMA_VERSION + 1))
    with pytest.raises(SchemaVersionError, match="newer"):
        Store(db_path)


def test_older_schema_is_migrated(db_path):
    Store(db_path).set_meta("schema_version", "0")
    assert Store(db_path).schema_version == SCHEMA_VERSION


def test_foreign_sqlite_file_is_refused(db_path):
    conn = sqlite3.connect(db_path)
    conn.execute("CREATE TABLE other (x)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="not an hl-debug one"):
        Store(db_path)


def test_not_sqlite_at_all(db_path):
    db_path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="not a usable SQLite database"):
        Store(db_path)


def test_missing_database_without_create(tmp_path):
    with pytest.raises(MissingStepError, match="no database") as exc:
        Store(tmp_path / "nope.db", create=False)
    assert "hl-debug ingest" in exc.value.hint


def test_stats(tiny_store):
    s = tiny_store.stats()
    assert s["n_utterances"] == 24 and s["n_annotated"] == 19 and s["n_unannotated"] == 5
    assert s["by_usage"] == {"testing": 3, "training": 13, "validation": 3, "none": 5}
    assert s["by_intent"] == {"bill_question": 7, "card_issue": 6, "chat_settings": 6}


def test_run_records_success_and_failure(store):
    with store.run("demo", parameters={"k": 3}, inputs_hash="abc") as counts:
        counts["n"] = 5
    last = store.last_run("demo")
    assert last["counts"] == {"n": 5} and last["parameters"] == {"k": 3} and last["status"] == "ok"
    assert "numpy" not in last["versions"] and "python" in last["versions"]
    assert store.is_up_to_date("demo", "abc") and not store.is_up_to_date("demo", "xyz")
    with pytest.raises(RuntimeError):
        with store.run("demo", inputs_hash="xyz"):
            raise RuntimeError("boom")
    failed = store.last_run("demo", status=None)
    assert failed["status"] == "failed" and "boom" in failed["error"]
    assert store.last_run("demo")["inputs_hash"] == "abc"


def test_transaction_rolls_back(store):
    with pytest.raises(ValueError):
        with store.transaction():
            store.db["reports"].insert({"name": "x", "body": "{}", "created_at": "now"})
            raise ValueError
    assert store.report("x") is None


def test_embeddings_round_trip_and_missing(tiny_store):
    rows = tiny_store.utterances(columns="id, text_hash")
    vecs = np.random.default_rng(0).normal(size=(len(rows), 4)).astype(np.float32)
    with pytest.raises(MissingStepError):
        tiny_store.load_embeddings("enc")
    tiny_store.save_embeddings("enc", [r["text_hash"] for r in rows], vecs)
    ids, X = tiny_store.load_embeddings("enc")
    assert ids.tolist() == [r["id"] for r in rows]
    np.testing.assert_array_equal(X, vecs)
    assert tiny_store.embedded_hashes("enc") == {r["text_hash"] for r in rows}
    assert tiny_store.embedded_hashes("other") == set()


def test_predictions_cache_and_join(tiny_store):
    rows = tiny_store.utterances(columns="id, text_hash")
    tiny_store.save_predictions("ep", [
        {"text_hash": rows[0]["text_hash"], "label": "card_issue", "confidence": 0.9,
         "distribution": [["card_issue", 0.9]], "entropy": 0.3, "margin": 0.8},
        {"text_hash": rows[1]["text_hash"], "label": None},
    ])
    tiny_store.set_meta("active_endpoint", "ep")
    df = tiny_store.predictions_df()
    assert len(df) == 24
    assert df.loc[df.id == rows[0]["id"], "label"].item() == "card_issue"
    assert df["label"].notna().sum() == 1
    assert tiny_store.cached_prediction_hashes("ep") == {rows[0]["text_hash"], rows[1]["text_hash"]}


def test_replace_rows_only_for_derived_tables(store):
    store.replace_rows("clusters", [{"cluster_id": 1, "size": 3}, {"cluster_id": 2, "size": 4}])
    assert [r["size"] for r in store.rows("clusters", order_by="cluster_id")] == [3, 4]
    store.replace_rows("clusters", [{"cluster_id": 9, "size": 1}])
    assert store.rows("clusters") == [{"cluster_id": 9, "size": 1}]
    with pytest.raises(ValueError, match="valid: points"):
        store.replace_rows("utterances", [])
    assert store.rows("issues") == []


def test_reports_round_trip(store):
    store.save_report("model", {"accuracy": np.float32(0.5), "n": np.int64(3), "v": np.arange(2)})
    assert store.report("model") == {"accuracy": 0.5, "n": 3, "v": [0, 1]}
