"""The one module that owns hl-debug's SQLite schema and every query.

Everything the pipeline computes lives in one SQLite file, written through
:class:`Store` (a thin layer over :class:`sqlite_utils.Database`). Other modules never
write SQL: they call the methods here.

Tables
------
``utterances``      one row per export record (the original labels, never overwritten)
``runs``            each pipeline step run: parameters, versions, inputs hash, timings, counts
``predictions``     prediction cache keyed by (endpoint identity, text hash)
``embeddings``      float32 sentence vectors keyed by (encoder identity, text hash)
``points``          per utterance: 2-D map coordinates, cluster, outlier score
``clusters``        per cluster: size, label mix, purity, keywords, ranks
``neighbors``       k nearest neighbours of each utterance in embedding space
``issues``          label-issue scores, suggested labels and evidence
``queue``           the annotation queue for unannotated utterances
``duplicates``      near-duplicate groups (conflicting labels, split leakage)
``reports``         JSON documents (model report, findings) by name
``annotations``     decisions made in the web app (append-only; the effective label is the latest)
``hl_meta``         key/value: schema version, active endpoint/encoder
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import sqlite_utils

from hl_debug.domain import SPLITS, hash_json, text_hash  # noqa: F401 (re-exported)
from hl_debug.errors import (
    MissingStepError,
    NotFoundError,
    SchemaVersionError,
    StoreError,
)
from hl_debug.storage.derived import DerivedTables

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
USAGES = SPLITS

# Tables whose rows are replaced wholesale by one step run (pk per table).
DERIVED_TABLES: dict[str, tuple[str, ...]] = {
    "points": ("id",),
    "clusters": ("cluster_id",),
    "neighbors": ("id", "rank"),
    "issues": ("id",),
    "queue": ("id",),
    "duplicates": ("group_id", "id"),
}

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
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_annotations_utterance ON annotations(utterance_id, id);
"""

# Migrations from version N to N+1, applied in order by Store.open.
_MIGRATIONS: dict[int, str] = {}


def now() -> str:
    """UTC timestamp in ISO 8601, second precision."""
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


def package_versions(*names: str) -> dict[str, str]:
    """Installed versions of the named distributions (plus hl-debug and Python)."""
    import platform
    from importlib import metadata

    from hl_debug import __version__

    out = {"hl-debug": __version__, "python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


class Store(DerivedTables):
    """hl-debug's SQLite database.

    Parameters
    ----------
    path:
        File path, or ``":memory:"`` for tests.
    create:
        Create the file (and its folder) when it does not exist. When False a missing
        database raises :class:`StoreError` naming the step to run.
    """

    def __init__(self, path: str | Path = ":memory:", *, create: bool = True) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            p = Path(self.path)
            if not p.exists():
                if not create:
                    raise MissingStepError(f"no database at {self.path}", step="ingest EXPORT")
                p.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
            self.db = sqlite_utils.Database(conn)
            if self.path != ":memory:":
                self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self._init_schema()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a usable SQLite database: {exc}") from exc

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
        with self.transaction():
            for v in range(version, SCHEMA_VERSION):
                if v in _MIGRATIONS:
                    log.info("migrating %s from schema %d to %d", self.path, v, v + 1)
                    for stmt in _MIGRATIONS[v].split(";"):
                        if stmt.strip():
                            self.db.execute(stmt)
            if version != SCHEMA_VERSION:
                self._set_meta("schema_version", str(SCHEMA_VERSION))

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic transaction: everything inside commits together or not at all."""
        conn = self.db.conn
        if conn.in_transaction:  # nested: join the outer transaction
            yield
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            conn.rollback()
            raise
        else:
            conn.commit()

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
        with self.transaction():
            self._set_meta(key, value)

    @property
    def schema_version(self) -> int:
        return int(self.get_meta("schema_version") or 0)

    # -- runs -----------------------------------------------------------------------

    @contextlib.contextmanager
    def run(self, step: str, *, parameters: dict | None = None, inputs_hash: str | None = None,
            versions: dict | None = None) -> Iterator[dict]:
        """Record one run of ``step``.

        Yields a dict the step fills with counts (``counts["n_embedded"] = ...``); the run
        row is marked ``ok`` with its duration on success, ``failed`` with the error
        otherwise (and the error re-raised).
        """
        counts: dict[str, Any] = {}
        t0 = time.perf_counter()
        with self.transaction():
            run_id = self.db["runs"].insert(
                {
                    "step": step,
                    "status": "running",
                    "parameters": json.dumps(parameters or {}, sort_keys=True, default=str),
                    "versions": json.dumps(versions or package_versions(), sort_keys=True),
                    "inputs_hash": inputs_hash,
                    "started_at": now(),
                }
            ).last_pk
        counts["_run_id"] = run_id
        status, error = "ok", None
        try:
            yield counts
        except BaseException as exc:
            status, error = ("interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"), repr(exc)
            raise
        finally:
            counts.pop("_run_id", None)
            with self.transaction():
                self.db["runs"].update(
                    run_id,
                    {
                        "status": status,
                        "error": error,
                        "counts": json.dumps(counts, sort_keys=True, default=str),
                        "finished_at": now(),
                        "duration_s": round(time.perf_counter() - t0, 3),
                    },
                )

    def last_run(self, step: str, *, status: str | None = "ok") -> dict | None:
        sql = "SELECT * FROM runs WHERE step = ?" + (" AND status = ?" if status else "") + " ORDER BY id DESC LIMIT 1"
        rows = list(self.db.query(sql, [step, status] if status else [step]))
        if not rows:
            return None
        row = rows[0]
        for key in ("parameters", "versions", "counts"):
            row[key] = json.loads(row[key]) if row[key] else {}
        return row

    def is_up_to_date(self, step: str, inputs_hash: str) -> bool:
        """True when the last successful run of ``step`` saw the same inputs hash."""
        last = self.last_run(step)
        return bool(last and last["inputs_hash"] == inputs_hash)

    def runs(self, limit: int = 50) -> list[dict]:
        return list(self.db.query("SELECT * FROM runs ORDER BY id DESC LIMIT ?", [limit]))

    # -- utterances -----------------------------------------------------------------

    def count_utterances(self) -> int:
        return self.db["utterances"].count

    def require_utterances(self) -> None:
        if self.count_utterances() == 0:
            raise MissingStepError(f"the database {self.path} holds no utterances", step="ingest EXPORT")

    def upsert_utterances(self, rows: Sequence[dict]) -> dict[str, int]:
        """Insert new and update changed utterances in one transaction.

        ``rows`` are validated utterance dicts (see :func:`hl_debug.steps.ingest.validate`)
        carrying ``row_hash``. Returns counts ``added``, ``changed``, ``unchanged`` and
        ``not_in_export`` (rows in the database the new export no longer has; kept).
        """
        existing = {r[0]: r[1] for r in self.db.execute("SELECT id, row_hash FROM utterances")}
        stamp = now()
        added, changed, unchanged = [], [], 0
        for row in rows:
            old = existing.get(row["id"])
            if old is None:
                added.append({**row, "ingested_at": stamp, "updated_at": stamp})
            elif old != row["row_hash"]:
                changed.append({**row, "updated_at": stamp})
            else:
                unchanged += 1
        seen = {r["id"] for r in rows}
        not_in_export = sum(1 for i in existing if i not in seen)
        positions = [(row["position"], row["id"]) for row in rows]
        with self.transaction():
            if added:
                self.db["utterances"].insert_all(added, batch_size=1000)
            for row in changed:
                self.db["utterances"].update(row["id"], row)
            self.db.conn.executemany("UPDATE utterances SET position = ? WHERE id = ?", positions)
        return {"added": len(added), "changed": len(changed), "unchanged": unchanged, "not_in_export": not_in_export}

    def utterances(self, *, columns: str = "*", where: str | None = None, params: Sequence = (),
                   order_by: str = "id") -> list[dict]:
        sql = f"SELECT {columns} FROM utterances" + (f" WHERE {where}" if where else "") + f" ORDER BY {order_by}"
        return list(self.db.query(sql, list(params)))

    def utterances_df(self):
        """All utterances as a pandas DataFrame (without the raw record), ordered by id."""
        import pandas as pd

        return pd.read_sql_query(
            "SELECT id, project_id, text, intent, usage, complete, score, text_hash, position FROM utterances ORDER BY id",
            self.db.conn,
        )

    def get_utterances(self, ids: Iterable[int]) -> list[dict]:
        ids = list(ids)
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        return list(self.db.query(f"SELECT * FROM utterances WHERE id IN ({marks}) ORDER BY id", ids))

    def get_utterance(self, utterance_id: int) -> dict:
        rows = self.get_utterances([utterance_id])
        if not rows:
            raise NotFoundError(f"no utterance with id {utterance_id}")
        return rows[0]

    def project_ids(self) -> list[int]:
        return [r[0] for r in self.db.execute("SELECT DISTINCT project_id FROM utterances ORDER BY 1")]

    def intents(self) -> list[str]:
        """The annotated intents, sorted."""
        return [r[0] for r in self.db.execute(
            "SELECT DISTINCT intent FROM utterances WHERE intent IS NOT NULL ORDER BY 1")]

    def texts_by_hash(self) -> dict[str, str]:
        return {h: t for h, t in self.db.execute("SELECT text_hash, text FROM utterances")}

    def utterances_hash(self, columns: str = "id, text_hash, intent, usage") -> str:
        """Hash of the named utterance columns: the input identity of downstream steps."""
        h = hashlib.sha1()
        for row in self.db.execute(f"SELECT {columns} FROM utterances ORDER BY id"):
            h.update(repr(row).encode())
        return h.hexdigest()

    def stats(self) -> dict[str, Any]:
        """Counts: ``n_utterances``, ``n_annotated``, ``n_unannotated``, by usage, by intent."""
        q = self.db.execute
        n = q("SELECT COUNT(*) FROM utterances").fetchone()[0]
        n_ann = q("SELECT COUNT(*) FROM utterances WHERE intent IS NOT NULL").fetchone()[0]
        by_usage = {(u if u is not None else "none"): c for u, c in q(
            "SELECT usage, COUNT(*) FROM utterances GROUP BY usage ORDER BY usage IS NULL, usage")}
        by_intent = {i: c for i, c in q(
            "SELECT intent, COUNT(*) FROM utterances WHERE intent IS NOT NULL GROUP BY intent ORDER BY COUNT(*) DESC, intent")}
        return {
            "n_utterances": n,
            "n_annotated": n_ann,
            "n_unannotated": n - n_ann,
            "by_usage": by_usage,
            "by_intent": by_intent,
        }

    # -- predictions ----------------------------------------------------------------

    def cached_prediction_hashes(self, endpoint: str) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT text_hash FROM predictions WHERE endpoint = ?", [endpoint])}

    def save_predictions(self, endpoint: str, rows: Sequence[dict]) -> None:
        """Cache predictions for ``endpoint``; each row has ``text_hash``, ``label`` (None
        when the API gave no prediction), ``confidence``, ``distribution`` (list of
        ``[label, confidence]`` most confident first), ``entropy`` and ``margin``."""
        stamp = now()
        records = [
            (endpoint, r["text_hash"], r.get("label"), r.get("confidence"), json.dumps(r.get("distribution") or []),
             r.get("entropy"), r.get("margin"), r.get("predicted_at", stamp))
            for r in rows
        ]
        # Called once per answered batch: a plain executemany (no per-call table
        # introspection) keeps the cache write well below the HTTP round trip.
        with self.transaction():
            self.db.conn.executemany(
                "INSERT OR REPLACE INTO predictions (endpoint, text_hash, label, confidence, distribution, entropy, "
                "margin, predicted_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                records,
            )

    def endpoints(self) -> list[dict]:
        return list(self.db.query(
            "SELECT endpoint, COUNT(*) AS n, SUM(label IS NULL) AS n_without_prediction, MAX(predicted_at) AS last "
            "FROM predictions GROUP BY endpoint ORDER BY last DESC"))

    def active_endpoint(self) -> str | None:
        return self.get_meta("active_endpoint")

    def predictions_df(self, endpoint: str | None = None):
        """One row per utterance joined with ``endpoint``'s cached prediction (NULLs where
        none). Columns: id, text, intent, usage, label, confidence, distribution, entropy,
        margin, endpoint, predicted_at. ``endpoint`` defaults to the active one."""
        import pandas as pd

        endpoint = endpoint or self.active_endpoint()
        if endpoint is None:
            raise MissingStepError("no predictions in the database yet", step="predict")
        return pd.read_sql_query(
            "SELECT u.id, u.text, u.intent, u.usage, p.label, p.confidence, p.distribution, p.entropy, "
            "p.margin, p.endpoint, p.predicted_at FROM utterances u "
            "LEFT JOIN predictions p ON p.text_hash = u.text_hash AND p.endpoint = ? ORDER BY u.id",
            self.db.conn,
            params=[endpoint],
        )

    # -- embeddings -----------------------------------------------------------------

    def embedded_hashes(self, encoder: str) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT text_hash FROM embeddings WHERE encoder = ?", [encoder])}

    def save_embeddings(self, encoder: str, hashes: Sequence[str], vectors: np.ndarray) -> None:
        """Store ``vectors`` (shape ``(n, dim)``) as float32 blobs keyed by (encoder, hash)."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(hashes):
            raise ValueError(f"expected {len(hashes)} vectors of shape (n, dim), got {vectors.shape}")
        dim = vectors.shape[1]
        with self.transaction():
            self.db.conn.executemany(
                "INSERT OR REPLACE INTO embeddings (encoder, text_hash, dim, vector) VALUES (?, ?, ?, ?)",
                ((encoder, h, dim, v.tobytes()) for h, v in zip(hashes, vectors)),
            )

    def load_embeddings(self, encoder: str, ids: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings of every utterance (or of ``ids``), ordered by id.

        Returns ``(ids, X)`` with ``ids`` shape ``(n,)`` and ``X`` shape ``(n, dim)``
        float32. Raises :class:`MissingStepError` when any utterance lacks a vector.
        """
        sql = ("SELECT u.id, e.vector, e.dim FROM utterances u LEFT JOIN embeddings e "
               "ON e.text_hash = u.text_hash AND e.encoder = ?")
        params: list = [encoder]
        if ids is not None:
            ids = list(ids)
            sql += f" WHERE u.id IN ({','.join('?' * len(ids))})"
            params += ids
        rows = self.db.execute(sql + " ORDER BY u.id", params).fetchall()
        missing = [r[0] for r in rows if r[1] is None]
        if missing:
            raise MissingStepError(
                f"{len(missing)} utterance(s) have no embedding for encoder {encoder!r} (e.g. id {missing[0]})",
                step="embed",
            )
        if not rows:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
        dim = rows[0][2]
        X = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dim)
        return np.array([r[0] for r in rows], dtype=np.int64), X.copy()

    # -- derived tables (replaced wholesale by one run) ------------------------------

    def replace_rows(self, table: str, rows: Iterable[dict], *, columns: dict[str, type] | None = None) -> int:
        """Replace every row of derived ``table`` with ``rows`` in one transaction.

        ``table`` must be one of :data:`DERIVED_TABLES`; its primary key comes from there.
        ``columns`` optionally fixes column types (so an empty result still makes a table).
        """
        if table not in DERIVED_TABLES:
            raise ValueError(f"unknown derived table {table!r}; valid: {', '.join(DERIVED_TABLES)}")
        rows = list(rows)
        pk = DERIVED_TABLES[table]
        with self.transaction():
            self.db[table].drop(ignore=True)
            if columns:
                self.db[table].create(columns, pk=pk if len(pk) > 1 else pk[0])
            if rows:
                self.db[table].insert_all(rows, pk=pk if len(pk) > 1 else pk[0], batch_size=2000, alter=True)
        return len(rows)

    def rows(self, table: str, *, where: str | None = None, params: Sequence = (), order_by: str | None = None,
             limit: int | None = None, offset: int | None = None) -> list[dict]:
        """Rows of a derived table (empty list when the step has not run)."""
        if table not in DERIVED_TABLES:
            raise ValueError(f"unknown derived table {table!r}; valid: {', '.join(DERIVED_TABLES)}")
        if not self.db[table].exists():
            return []
        sql = f"SELECT * FROM [{table}]" + (f" WHERE {where}" if where else "")
        if order_by:
            sql += f" ORDER BY {order_by}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}" + (f" OFFSET {int(offset)}" if offset else "")
        return list(self.db.query(sql, list(params)))

    def require_table(self, table: str, step: str) -> None:
        if not self.db[table].exists() or self.db[table].count == 0:
            raise MissingStepError(f"the database has no {table} yet", step=step)

    # -- reports --------------------------------------------------------------------

    def save_report(self, name: str, body: Any, *, run_id: int | None = None) -> None:
        # Plain SQL: sqlite-utils' upsert bumps the schema cookie, which map_state() reads as
        # "a table was rebuilt" (the web app stores its map payload here without changing it).
        with self.transaction():
            self.db.execute("INSERT OR REPLACE INTO reports (name, body, run_id, created_at) VALUES (?, ?, ?, ?)",
                            [name, json.dumps(body, default=_json_default), run_id, now()])

    def report(self, name: str) -> Any | None:
        row = self.db.execute("SELECT body FROM reports WHERE name = ?", [name]).fetchone()
        return json.loads(row[0]) if row else None

    # -- annotations & web app (issue #6) ------------------------------------------------

    def add_annotation(self, utterance_id: int, action: str, label: str | None,
                       previous_label: str | None) -> dict:
        """Append one review decision (never updates or deletes earlier ones)."""
        row = {"utterance_id": int(utterance_id), "action": action, "label": label,
               "previous_label": previous_label, "created_at": now()}
        with self.transaction():
            row["id"] = self.db["annotations"].insert(row).last_pk
        return row

    def annotations(self, utterance_id: int | None = None) -> list[dict]:
        """Decisions in the order they were made, with the utterance's text and original intent."""
        sql = ("SELECT a.id, a.utterance_id, u.text, u.intent AS original_label, a.action, a.label, "
               "a.previous_label, a.created_at FROM annotations a JOIN utterances u ON u.id = a.utterance_id")
        params: list = []
        if utterance_id is not None:
            sql += " WHERE a.utterance_id = ?"
            params.append(int(utterance_id))
        return list(self.db.query(sql + " ORDER BY a.id", params))

    # The effective label comes from the latest labelling decision; 'skip' never changes it.
    _LATEST_LABEL_SQL = (
        "SELECT a.utterance_id, a.label, a.action FROM annotations a JOIN ("
        "SELECT utterance_id, MAX(id) AS mid FROM annotations WHERE action IN ('relabel', 'accept', 'keep') "
        "GROUP BY utterance_id) m ON a.id = m.mid"
    )
    _LATEST_DECISION_SQL = (
        "SELECT a.utterance_id, a.action, a.label, a.created_at FROM annotations a JOIN ("
        "SELECT utterance_id, MAX(id) AS mid FROM annotations GROUP BY utterance_id) m ON a.id = m.mid"
    )

    def decided_labels(self) -> dict[int, str | None]:
        """``{utterance id: label}`` of the latest labelling decision per decided utterance."""
        return {r[0]: r[1] for r in self.db.execute(self._LATEST_LABEL_SQL)}

    def effective_label(self, utterance_id: int) -> str | None:
        row = self.db.execute(
            "SELECT label FROM annotations WHERE utterance_id = ? AND action IN ('relabel', 'accept', 'keep') "
            "ORDER BY id DESC LIMIT 1", [int(utterance_id)]).fetchone()
        if row is not None:
            return row[0]
        return self.get_utterance(utterance_id)["intent"]

    def table_exists(self, table: str) -> bool:
        return self.db[table].exists()

    def table_columns(self, table: str) -> list[str]:
        return [c.name for c in self.db[table].columns] if self.db[table].exists() else []

    def web_rows(self, ids: Sequence[int] | None = None, *, endpoint: str | None = None,
                 where: str | None = None, params: Sequence = (), order_by: str = "u.id",
                 limit: int | None = None, offset: int = 0,
                 columns: Sequence[str] | None = None) -> tuple[list[str], list[tuple]]:
        """Every utterance (or ``ids``) joined with whatever later steps have written.

        Returns ``(columns, rows)``: id, text, intent (original), label (effective), usage,
        complete, x, y, cluster_id, outlier_score, predicted_label, confidence, entropy,
        margin, issue_score, suggested_label, flagged, issue_reason, issue_rank, queue_rank,
        queue_reason, decision. Columns of tables that do not exist yet are NULL, so the web
        app works after any prefix of the pipeline. ``limit``/``offset`` page in SQL
        (``limit=0`` returns the count; see :meth:`web_count`). ``where`` is extra SQL over those
        aliases (``u`` utterances, ``p`` points, ``pr`` predictions, ``i`` issues, ``q``
        queue) with ``?`` parameters. ``columns`` keeps only those output columns (the map's
        payload needs 13 of the 22; fewer to materialise at 100k rows).
        """
        endpoint = endpoint or self.active_endpoint()
        joins, select = [], ["u.id", "u.text", "u.intent", "COALESCE(el.label, u.intent) AS label",
                             "u.usage", "u.complete"]
        args: list = []
        joins.append(f"LEFT JOIN ({self._LATEST_LABEL_SQL}) el ON el.utterance_id = u.id")
        joins.append(f"LEFT JOIN ({self._LATEST_DECISION_SQL}) d ON d.utterance_id = u.id")

        def optional(table: str, alias: str, on: str, cols: dict[str, str]) -> None:
            have = set(self.table_columns(table))
            if have:
                joins.append(f"LEFT JOIN [{table}] {alias} ON {on}")
            for name, col in cols.items():
                select.append(f"{alias}.[{col}] AS {name}" if col in have else f"NULL AS {name}")

        optional("points", "p", "p.id = u.id",
                 {"x": "x", "y": "y", "cluster_id": "cluster_id", "outlier_score": "outlier_score"})
        if endpoint is not None:
            joins.append("LEFT JOIN predictions pr ON pr.text_hash = u.text_hash AND pr.endpoint = ?")
            args.append(endpoint)
            select += ["pr.label AS predicted_label", "pr.confidence", "pr.entropy", "pr.margin"]
        else:
            select += ["NULL AS predicted_label", "NULL AS confidence", "NULL AS entropy", "NULL AS margin"]
        optional("issues", "i", "i.id = u.id",
                 {"issue_score": "score", "suggested_label": "suggested_label", "flagged": "flagged",
                  "issue_reason": "reason", "issue_rank": "rank"})
        optional("queue", "q", "q.id = u.id", {"queue_rank": "rank", "queue_reason": "reason"})
        select.append("d.action AS decision")
        if columns is not None:
            by_name = {s.split(" AS ")[-1].split(".")[-1]: s for s in select}
            unknown = [c for c in columns if c not in by_name]
            if unknown:
                raise ValueError(f"unknown column(s) {', '.join(unknown)}; valid: {', '.join(by_name)}")
            select = [by_name[c] for c in columns]
        conds: list[str] = []
        if ids is not None:
            ids = [int(i) for i in ids]
            if not ids:
                return [], []
            conds.append(f"u.id IN ({','.join('?' * len(ids))})")
            args += ids
        if where:
            conds.append(f"({where})")
            args += list(params)
        sql = f"SELECT {', '.join(select)} FROM utterances u {' '.join(joins)}"
        if conds:
            sql += " WHERE " + " AND ".join(conds)
        if limit == 0:  # a count: same joins and filters, no rows
            return ["n"], self.db.execute(f"SELECT COUNT(*) FROM ({sql})", args).fetchall()
        sql += f" ORDER BY {order_by}"
        if limit is not None:
            sql += f" LIMIT {int(limit)} OFFSET {int(offset)}"
        cur = self.db.execute(sql, args)
        return [c[0] for c in cur.description], cur.fetchall()

    def map_state(self) -> dict[str, Any]:
        """A cheap fingerprint of everything the map shows: changes with every finished or
        started run (ingest, analyze, predict, signals), every decision, the active endpoint,
        and every derived table rebuilt (``replace_rows`` drops and recreates, which bumps the
        schema version) — so the web app can cache the map's payload and answer 304s."""
        runs = self.db.execute("SELECT MAX(id), COUNT(finished_at) FROM runs").fetchone()
        notes = self.db.execute("SELECT MAX(id), COUNT(*) FROM annotations").fetchone()
        n = self.db.execute("SELECT MAX(id), COUNT(*) FROM utterances").fetchone()
        schema = self.db.execute("PRAGMA schema_version").fetchone()[0]
        return {"runs": list(runs), "decisions": list(notes), "utterances": list(n), "schema": schema,
                "endpoint": self.active_endpoint()}

    def latest_actions(self) -> dict[int, str]:
        """``{utterance id: action}`` of the latest decision (any action, skip included) per utterance."""
        return {r[0]: r[1] for r in self.db.execute(self._LATEST_DECISION_SQL)}

    def web_count(self, **kwargs: Any) -> int:
        """How many rows :meth:`web_rows` would return with the same filters."""
        return int(self.web_rows(limit=0, **kwargs)[1][0][0])

    def ranked_ids(self, table: str, *, order_by: str, pending_only: bool = False, flagged_only: bool = False,
                   limit: int = 50, offset: int = 0) -> tuple[list[int], int]:
        """One page of ids of derived ``table`` (issues, queue) in ``order_by`` order, and the total.

        ``pending_only`` leaves out utterances that already have a decision; ``flagged_only``
        keeps rows whose ``flagged`` column is 1. Paging runs on the small table alone, so a
        page costs the same at 100k rows as at 2k.
        """
        if table not in DERIVED_TABLES:
            raise ValueError(f"unknown derived table {table!r}; valid: {', '.join(DERIVED_TABLES)}")
        if not self.table_exists(table):
            return [], 0
        conds = ["id NOT IN (SELECT utterance_id FROM annotations)"] if pending_only else []
        if flagged_only and "flagged" in self.table_columns(table):
            conds.append("flagged = 1")
        where = (" WHERE " + " AND ".join(conds)) if conds else ""
        total = self.db.execute(f"SELECT COUNT(*) FROM [{table}]{where}").fetchone()[0]
        ids = [r[0] for r in self.db.execute(
            f"SELECT id FROM [{table}]{where} ORDER BY {order_by} LIMIT ? OFFSET ?", [int(limit), int(offset)])]
        return ids, int(total)

    def web_dicts_in_order(self, ids: Sequence[int], **kwargs: Any) -> list[dict]:
        """:meth:`web_dicts` for ``ids``, returned in the order of ``ids``."""
        by_id = {r["id"]: r for r in self.web_dicts(ids, **kwargs)}
        return [by_id[i] for i in ids if i in by_id]

    def web_dicts(self, ids: Sequence[int] | None = None, **kwargs: Any) -> list[dict]:
        """:meth:`web_rows` as a list of dicts."""
        cols, rows = self.web_rows(ids, **kwargs)
        return [dict(zip(cols, r)) for r in rows]

    def column_lists(self, table: str, columns: Sequence[str], *, endpoint: str | None = None) -> dict[str, list]:
        """Whole columns of one table as lists, in primary-key order: ``{column: [value per row]}``.

        One plain query and no per-row dicts (the web app's model report reads utterances and
        predictions this way and aligns them by text hash: at 100k rows cheaper than
        :meth:`predictions_df`, which also reads every stored distribution). ``table`` is
        ``utterances``, ``predictions`` (the rows of ``endpoint``, default the active one) or
        a derived table; columns it lacks come back as None lists (step not run yet).
        """
        if table not in ("utterances", "predictions", *DERIVED_TABLES):
            raise ValueError(f"unknown table {table!r}; valid: utterances, predictions, {', '.join(DERIVED_TABLES)}")
        have = set(self.table_columns(table))
        present = [c for c in columns if c in have]
        rows: list = []
        if present:
            select = ", ".join(f"[{c}]" for c in present)
            if table == "predictions":
                rows = self.db.execute(f"SELECT {select} FROM predictions WHERE endpoint = ? ORDER BY text_hash",
                                       [endpoint or self.active_endpoint()]).fetchall()
            else:
                order = ", ".join(DERIVED_TABLES.get(table, ("id",)))
                rows = self.db.execute(f"SELECT {select} FROM [{table}] ORDER BY {order}").fetchall()
        found = dict(zip(present, map(list, zip(*rows)))) if rows else {c: [] for c in present}
        return {c: found.get(c, [None] * len(rows)) for c in columns}

    def search_ids(self, query: str, *, limit: int = 500) -> list[int]:
        """Ids of utterances whose text contains ``query`` (case-insensitive, literal)."""
        escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return [r[0] for r in self.db.execute(
            "SELECT id FROM utterances WHERE text LIKE ? ESCAPE '\\' ORDER BY id LIMIT ?",
            [f"%{escaped}%", int(limit)])]

    def neighbors_of(self, utterance_id: int) -> list[dict]:
        """The stored nearest neighbours of one utterance with their effective labels, by rank."""
        if not self.table_exists("neighbors"):
            return []
        return list(self.db.query(
            "SELECT n.rank, n.neighbor_id AS id, n.similarity, u.text, u.usage, u.intent, "
            f"COALESCE(el.label, u.intent) AS label FROM neighbors n JOIN utterances u ON u.id = n.neighbor_id "
            f"LEFT JOIN ({self._LATEST_LABEL_SQL}) el ON el.utterance_id = u.id "
            "WHERE n.id = ? ORDER BY n.rank", [int(utterance_id)]))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
