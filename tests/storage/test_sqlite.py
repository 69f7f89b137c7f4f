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



def test_schema_1_database_gains_reviewer_and_batch(db_path):
    """A database written before team mode (schema 1: annotations without ``reviewer`` and
    ``batch``) is migrated in place, and its decisions survive with both left empty."""
    conn = sqlite3.connect(db_path)
    conn.executescript(
        "CREATE TABLE hl_meta (key TEXT PRIMARY KEY, value TEXT);"
        "INSERT INTO hl_meta VALUES ('schema_version', '1');"
        "CREATE TABLE annotations (id INTEGER PRIMARY KEY AUTOINCREMENT, utterance_id INTEGER NOT NULL,"
        " action TEXT NOT NULL, label TEXT, previous_label TEXT, created_at TEXT NOT NULL);"
        "INSERT INTO annotations (utterance_id, action, label, previous_label, created_at)"
        " VALUES (7, 'relabel', 'b', 'a', '2026-01-01');")
    conn.close()
    store = Store(db_path)
    assert store.schema_version == SCHEMA_VERSION == 2
    cols = {r[1] for r in store.db.execute("PRAGMA table_info(annotations)")}
    assert {"reviewer", "batch"} <= cols
    assert [tuple(r) for r in store.db.execute("SELECT utterance_id, label, reviewer, batch FROM annotations")] \
        == [(7, "b", None, None)]

