"""What only the SQLite engine does: its file, its schema version and migrations, the legacy
fragment methods (until their last callers convert)."""

from __future__ import annotations

import sqlite3

import pytest

from hl_debug.errors import MissingStepError, SchemaVersionError, StoreError
from hl_debug.storage import SCHEMA_VERSION, Store


def test_new_database_records_schema_version(store):
    assert store.schema_version == SCHEMA_VERSION
    for table in ("utterances", "runs", "predictions", "embeddings", "annotations", "reports"):
        assert store.table_exists(table)


def test_newer_schema_is_refused(db_path):
    Store(db_path).set_meta("schema_version", str(SCHEMA_VERSION + 1))
    with pytest.raises(SchemaVersionError, match="newer"):
        Store(db_path)


def test_older_schema_is_migrated(db_path):
    Store(db_path).set_meta("schema_version", "0")
    assert Store(db_path).schema_version == SCHEMA_VERSION


def test_schema_version_is_not_data(db_path):
    store = Store(db_path)
    store.set_meta("schema_version", str(SCHEMA_VERSION))
    assert store.data_version() == 0


def test_data_version_survives_reopening(db_path):
    store = Store(db_path)
    store.save_report("x", {})
    store.close()
    assert Store(db_path).data_version() == 1


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


def test_legacy_replace_rows_only_for_derived_tables(store):
    store.replace_rows("clusters", [{"cluster_id": 1, "size": 3}, {"cluster_id": 2, "size": 4}])
    assert [r["size"] for r in store.rows("clusters", order_by="cluster_id")] == [3, 4]
    store.replace_rows("clusters", [{"cluster_id": 9, "size": 1}])
    assert store.rows("clusters") == [{"cluster_id": 9, "size": 1}]
    with pytest.raises(ValueError, match="valid: points"):
        store.replace_rows("utterances", [])
    assert store.rows("issues") == []


def test_legacy_predictions_df(tiny_store):
    rows = tiny_store.utterance_rows(["id", "text_hash"])
    tiny_store.save_predictions("ep", [{"text_hash": rows[0]["text_hash"], "label": "card_issue"}])
    tiny_store.set_meta("active_endpoint", "ep")
    df = tiny_store.predictions_df()
    assert len(df) == 24 and df["label"].notna().sum() == 1
