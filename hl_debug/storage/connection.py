"""The SQLite connection: the core tables' DDL (declared once, here), migrations,
transactions, ``hl_meta`` and the data-version counter.

Core tables
-----------
``utterances``      one row per export record (the original labels, never overwritten)
``runs``            each pipeline step run: parameters, versions, inputs hash, timings, counts
``predictions``     prediction cache keyed by (endpoint identity, text hash)
``embeddings``      float32 sentence vectors keyed by (encoder identity, text hash)
``reports``         JSON documents (model report, findings, the map payload) by name
``annotations``     review decisions (append-only; see :mod:`hl_debug.storage.reviews`)
``hl_meta``         key/value: schema version, data version, active endpoint/encoder

Their columns are declared engine-neutrally in :data:`hl_debug.storage.schema.CORE_TABLES`
(the contract tests check this DDL against them). Derived tables (points, clusters, neighbours, each signal's table) are declared as
:class:`~hl_debug.storage.schema.Table` values and built by
:meth:`~hl_debug.storage.derived.DerivedTables.replace_table`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import sqlite_utils

from hl_debug.errors import MissingStepError, SchemaVersionError, StoreError
from hl_debug.storage.schema import Table

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
#: The ``hl_meta`` key of the data-version counter (see :meth:`Connection.data_version`).
DATA_VERSION_KEY = "data_version"
#: The ``hl_meta`` key counting review decisions (part of the data version).
REVIEW_VERSION_KEY = "review_version"

_DDL = """
CREATE TABLE IF NOT EXISTS hl_meta (
    key TEXT PRIMARY KEY,
    value TEXT
);
CREATE TABLE IF NOT EXISTS utterances (
    id INTEGER PRIMARY KEY,
    project_id INTEGER,
    text TEXT NOT NULL,
    intent TEXT,
    usage TEXT,
    complete INTEGER NOT NULL,
    score REAL,
    text_hash TEXT NOT NULL,
    position INTEGER,
    raw TEXT NOT NULL,
    row_hash TEXT NOT NULL,
    ingested_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_utterances_text_hash ON utterances(text_hash);
CREATE INDEX IF NOT EXISTS idx_utterances_intent ON utterances(intent);
CREATE INDEX IF NOT EXISTS idx_utterances_usage ON utterances(usage);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    step TEXT NOT NULL,
    status TEXT NOT NULL,
    parameters TEXT,
    versions TEXT,
    inputs_hash TEXT,
    counts TEXT,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    duration_s REAL,
    error TEXT
);
CREATE INDEX IF NOT EXISTS idx_runs_step ON runs(step, id);
CREATE TABLE IF NOT EXISTS predictions (
    endpoint TEXT NOT NULL,
    text_hash TEXT NOT NULL,
    label TEXT,
    confidence REAL,
    distribution TEXT,
    entropy REAL,
    margin REAL,
    predicted_at TEXT NOT NULL,
    PRIMARY KEY (endpoint, text_hash)
);
CREATE TABLE IF NOT EXISTS embeddings (
    encoder TEXT NOT NULL,
    text_hash TEXT NOT NULL,
    dim INTEGER NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (encoder, text_hash)
);
CREATE TABLE IF NOT EXISTS reports (
    name TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    run_id INTEGER,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS annotations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    utterance_id INTEGER NOT NULL REFERENCES utterances(id),
    action TEXT NOT NULL,
    label TEXT,
    previous_label TEXT,
    created_at TEXT NOT NULL,
    reviewer TEXT,
    batch TEXT
);
CREATE INDEX IF NOT EXISTS idx_annotations_utterance ON annotations(utterance_id, id);
"""

#: Seconds a write waits for another process's write to finish before giving up.
LOCK_TIMEOUT_S = 30.0


def _writable(path: Path) -> bool:
    """Whether this process may write the database file and create its ``-wal``/``-shm`` beside it."""
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK | os.X_OK)


def _read_only(path: str) -> StoreError:
    return StoreError(f"{path} is read-only: this command writes to the database",
                      hint="Give yourself write access to the file and its folder (or copy it somewhere writable "
                           "and pass --db COPY); commands that only read (stats, export, serve) work as it is.")


def _cause(exc: sqlite3.DatabaseError) -> str | None:
    """``"locked"``, ``"read-only"``, ``"full"`` or None (anything else: a bug, not the file)."""
    text = str(exc).lower()
    if "locked" in text or "busy" in text:
        return "locked"
    if "readonly" in text or "read-only" in text:
        return "read-only"
    if "disk i/o error" in text or "disk is full" in text:
        return "full"
    return None


def _store_error(exc: sqlite3.DatabaseError, path: str, *, opening: bool = False) -> StoreError:
    """The :class:`StoreError` for an SQLite failure, with the hint that fits its cause."""
    cause = _cause(exc)
    if cause == "locked":
        return StoreError(f"{path} is locked: another process is writing to it (a pipeline run, or a server "
                          f"recording decisions) and did not finish within {LOCK_TIMEOUT_S:g} s",
                          hint="Wait for the other hl-debug command to finish (or stop it), then run this again.")
    if cause == "read-only":
        return _read_only(path)
    if opening:
        return StoreError(f"{path} is not a usable SQLite database: {exc}")
    return StoreError(f"could not write to {path}: {exc}",
                      hint="Check the disk has free space and the file is not damaged (`sqlite3 FILE 'PRAGMA "
                           "integrity_check'`).")


# Migrations from version N to N+1, applied in order by Store.open.
# 1 -> 2: who made a decision (team mode) and the batch a bulk decision belongs to (a
# taxonomy merge or rename, a group labelling), so a batch can be previewed and reverted.
_MIGRATIONS: dict[int, str] = {
    1: "ALTER TABLE annotations ADD COLUMN reviewer TEXT; ALTER TABLE annotations ADD COLUMN batch TEXT",
}


class Connection:
    """One SQLite database file (or ``":memory:"``): schema, transactions, meta and the
    data version. The :class:`~hl_debug.storage.sqlite.Store` composes the query mixins on it.

    Parameters
    ----------
    path:
        File path, or ``":memory:"`` for tests.
    create:
        Create the file (and its folder) when it does not exist. When False a missing
        database raises :class:`StoreError` naming the step to run.
    """

    _intents_memo: tuple[int, list[str]] | None = None  # see Utterances.intents

    def __init__(self, path: str | Path = ":memory:", *, create: bool = True) -> None:
        self.path = str(path)
        #: True when the file can only be read (its permissions, or its folder's): reads work,
        #: a write raises :class:`StoreError` saying so.
        self.read_only = False
        if self.path != ":memory:":
            p = Path(self.path)
            if not p.exists():
                if not create:
                    raise MissingStepError(f"no database at {self.path}", step="ingest EXPORT")
                try:
                    p.parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise StoreError(f"cannot create the database {self.path}: {exc.strerror or exc}",
                                     hint="Point --db / HL_DB at a file in a folder you can write.") from exc
            elif p.is_dir():
                raise StoreError(f"{self.path} is a folder, not a database file",
                                 hint="Point --db / HL_DB at a file (hl-debug creates it).")
            elif p.stat().st_size == 0:  # SQLite would silently make it a database
                raise StoreError(f"{self.path} is an empty file (0 bytes), not an hl-debug database",
                                 hint="Delete it (or point --db / HL_DB at a new path): hl-debug creates the "
                                      "database itself.")
            else:
                self.read_only = not _writable(p)
        try:
            self.db = sqlite_utils.Database(self._connect())
            if self.path != ":memory:" and not self.read_only:
                self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self._init_schema()
        except sqlite3.DatabaseError as exc:
            raise _store_error(exc, self.path, opening=True) from exc

    def _connect(self) -> sqlite3.Connection:
        if not self.read_only:
            return sqlite3.connect(self.path, check_same_thread=False, timeout=LOCK_TIMEOUT_S)
        uri = Path(self.path).resolve().as_uri()
        try:
            conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, check_same_thread=False, timeout=LOCK_TIMEOUT_S)
            conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.OperationalError:
            # a WAL database in a folder we cannot write has no -shm to share: read it as a
            # snapshot (nobody can be writing it through this folder anyway)
            return sqlite3.connect(f"{uri}?immutable=1", uri=True, check_same_thread=False)

    # -- schema ---------------------------------------------------------------------

    def _init_schema(self) -> None:
        tables = set(self.db.table_names())
        if tables and "hl_meta" not in tables:
            raise StoreError(
                f"{self.path} is a SQLite database but not an hl-debug one (tables: {', '.join(sorted(tables)[:5])})",
                hint="Point --db / HL_DB at a new file; hl-debug creates it.",
            )
        version = int(self.get_meta("schema_version") or 0) if tables else 0
        if version > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"{self.path} has schema version {version}, newer than this hl-debug understands ({SCHEMA_VERSION})"
            )
        if not tables:
            # One script, one transaction: a new database is either complete or absent.
            self.db.conn.executescript(
                "BEGIN;" + _DDL
                + f"INSERT INTO hl_meta (key, value) VALUES ('schema_version', '{SCHEMA_VERSION}'); COMMIT;"
            )
            return
        if version == SCHEMA_VERSION:
            return  # nothing to migrate: no write lock taken, so reading never waits for a writer
        if self.read_only:
            raise StoreError(f"{self.path} has schema version {version} and must be upgraded to {SCHEMA_VERSION}, "
                             "but it is read-only", hint="Open it once with write access to upgrade it.")
        with self.transaction():
            for v in range(version, SCHEMA_VERSION):
                if v in _MIGRATIONS:
                    log.info("migrating %s from schema %d to %d", self.path, v, v + 1)
                    for stmt in _MIGRATIONS[v].split(";"):
                        if stmt.strip():
                            try:
                                self.db.execute(stmt)
                            except sqlite3.OperationalError as exc:  # re-run on a half-known schema
                                if "duplicate column" not in str(exc):
                                    raise
            if version != SCHEMA_VERSION:
                self._set_meta("schema_version", str(SCHEMA_VERSION))

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic transaction: everything inside commits together or not at all."""
        conn = self.db.conn
        if conn.in_transaction:  # nested: join the outer transaction
            yield
            return
        if self.read_only:
            raise _read_only(self.path)
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise _store_error(exc, self.path) from exc
        try:
            yield
            conn.commit()
        except sqlite3.OperationalError as exc:
            self._rollback()
            if _cause(exc) is None:
                raise
            raise _store_error(exc, self.path) from exc
        except BaseException:
            self._rollback()
            raise

    def _rollback(self) -> None:
        """Roll back, and forget what was memoised from the rolled-back writes (a memo is
        keyed on the data version, which the rollback takes back to a value it may reach
        again with other data)."""
        self.db.conn.rollback()
        self._intents_memo = None

    def close(self) -> None:
        self.db.conn.close()

    def get_meta(self, key: str) -> str | None:
        try:
            row = self.db.execute("SELECT value FROM hl_meta WHERE key = ?", [key]).fetchone()
        except sqlite3.OperationalError:
            return None
        return row[0] if row else None

    def _set_meta(self, key: str, value: str | None) -> None:
        self.db.execute("INSERT OR REPLACE INTO hl_meta (key, value) VALUES (?, ?)", [key, value])

    def set_meta(self, key: str, value: str | None) -> None:
        """Set one ``hl_meta`` key (and bump the data version: the active endpoint and encoder
        are meta keys views show)."""
        with self.transaction():
            self._set_meta(key, value)
            if key not in ("schema_version", DATA_VERSION_KEY, REVIEW_VERSION_KEY):
                self._bump()

    @property
    def schema_version(self) -> int:
        return int(self.get_meta("schema_version") or 0)

    # -- the data version ----------------------------------------------------------------

    def _bump(self, key: str = DATA_VERSION_KEY) -> None:
        """Increment a data-version counter; call inside the transaction of every write that
        changes what a view shows (utterances, predictions, embeddings, derived tables, reports,
        active endpoint/encoder: ``data_version``; review decisions: ``review_version``)."""
        self.db.execute("INSERT INTO hl_meta (key, value) VALUES (?, '1') "
                        "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1", [key])

    def data_version(self, *, reviews: bool = True) -> int:
        """A counter that grows with every write a view can show (0 for a new database);
        ``reviews=False`` leaves review decisions out (what the model report reads).

        Web caches key on it (through :meth:`map_state`) instead of SQLite's schema cookie,
        so a second engine can offer the same contract.
        """
        data = int(self.get_meta(DATA_VERSION_KEY) or 0)
        return data + int(self.get_meta(REVIEW_VERSION_KEY) or 0) if reviews else data

    # -- tables ----------------------------------------------------------------------------

    def table_exists(self, table: str) -> bool:
        """Whether ``table`` (a core or derived table's name) exists yet."""
        return self.db[table].exists()

    def table_columns(self, table: str) -> list[str]:
        """The stored columns of ``table`` (empty when it does not exist yet)."""
        return [c.name for c in self.db[table].columns] if self.db[table].exists() else []

    def require_table(self, table: Table | str, step: str) -> None:
        """:class:`MissingStepError` naming ``step`` when ``table`` (a Table or a name) is missing or empty."""
        name = table if isinstance(table, str) else table.name
        if not self.db[name].exists() or self.db[name].count == 0:
            raise MissingStepError(f"the database has no {name} yet", step=step)
