"""What only the SQLite engine does: its file, its schema version and migrations."""

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

