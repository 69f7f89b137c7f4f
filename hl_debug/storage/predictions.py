"""The prediction cache (by endpoint and text hash) and the embedding cache (by encoder
and text hash)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from hl_debug.errors import MissingStepError
from hl_debug.storage.runs import now
from hl_debug.storage.schema import PREDICTIONS, Column, Evidence, Table

#: The ``predictions`` table's columns (declared in :mod:`hl_debug.storage.schema`).
PREDICTION_COLUMNS = PREDICTIONS.column_names

#: Versions of the local model (``hl-debug retrain``): one row per endpoint, numbered in the
#: order they were made (1: the model the pipeline trained on the original labels).
MODEL_VERSIONS = Table(
    "model_versions",
    (
        Column("endpoint", str, "the version's cache identity (sources.local.local_identity)"),
        Column("version", int, "1, 2, ... in the order the versions were made"),
        Column("training_hash", str, "identity of the training data, encoder and parameters"),
        Column("encoder", str),
        Column("parameters", str, "JSON: the model's parameters"),
        Column("trained_at", str),
        Column("n_train", int, "training rows"),
        Column("n_decisions", int, "labelling decisions applied to its training data"),
        Column("based_on", str, "the endpoint it was compared against when it was made"),
        Column("model_dir", str, "where its files are kept"),
    ),
    pk=("endpoint",),
    orders={"version": (("version", False),)},
)

#: How each row's answer changed between the last retrain's two versions (the map colours by it).
MODEL_CHANGES = Table(
    "model_changes",
    (Column("id", int, "utterance id"), Column("change", str, "fixed, broken or changed"),
     Column("endpoint_a", str), Column("endpoint_b", str)),
    orders={"id": (("id", False),)},
)
#: The map's ``model_change`` column.
MODEL_CHANGE_EVIDENCE = Evidence(MODEL_CHANGES, {"model_change": "change"})


class Predictions:
    """Store methods over ``predictions`` (the mixin expects ``self.db``, ``self.transaction()``,
    ``self._bump()`` and ``self.get_meta()``)."""

    db: Any

    if TYPE_CHECKING:  # provided by the composed Store
        def transaction(self) -> Any:
            ...

        def _bump(self) -> None:
            ...

        def get_meta(self, key: str) -> str | None:
            ...

        def table_rows(self, table: Table, **kwargs: Any) -> list[dict]:
            ...

        def replace_table(self, table: Table, rows: Any) -> int:
            ...

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
            self._bump()

    def endpoints(self) -> list[dict]:
        """Every endpoint with cached answers, most recent first: ``endpoint``, ``n``,
        ``n_without_prediction``, ``last``; a local-model version also has its ``version``,
        ``training_hash``, ``parameters`` (dict), ``trained_at``, ``n_train``, ``n_decisions``,
        ``based_on`` and ``model_dir`` (see :meth:`model_versions`)."""
        versions = {v["endpoint"]: v for v in self.model_versions()}
        rows = list(self.db.query(
            "SELECT endpoint, COUNT(*) AS n, SUM(label IS NULL) AS n_without_prediction, MAX(predicted_at) AS last "
            "FROM predictions GROUP BY endpoint ORDER BY last DESC"))
        return [{**r, **versions.get(r["endpoint"], {})} for r in rows]

    def model_versions(self) -> list[dict]:
        """The local model's versions, oldest first (:data:`MODEL_VERSIONS`; ``parameters`` parsed)."""
        return [{**r, "parameters": json.loads(r["parameters"] or "{}")}
                for r in self.table_rows(MODEL_VERSIONS, order="version")]

    def record_model_version(self, row: dict) -> dict:
        """Add a version (a dict of :data:`MODEL_VERSIONS` columns but ``version``), numbered
        after the last; an endpoint already recorded keeps its first record. Returns the record."""
        known = self.model_versions()
        for v in known:
            if v["endpoint"] == row["endpoint"]:
                return v
        new = {**row, "version": max((v["version"] for v in known), default=0) + 1}
        self.replace_table(MODEL_VERSIONS, [{**v, "parameters": json.dumps(v["parameters"], sort_keys=True)}
                                            for v in [*known, new]])
        return new

    def save_model_changes(self, endpoint_a: str, endpoint_b: str, changes: dict[int, str]) -> None:
        """Replace :data:`MODEL_CHANGES` with ``{utterance id: change}`` between ``endpoint_a``
        and ``endpoint_b`` (unchanged rows are left out)."""
        self.replace_table(MODEL_CHANGES, [{"id": int(i), "change": c, "endpoint_a": endpoint_a,
                                            "endpoint_b": endpoint_b} for i, c in sorted(changes.items())])

    def model_change_pair(self) -> tuple[str, str] | None:
        """``(endpoint_a, endpoint_b)`` of the changes :meth:`save_model_changes` kept (None: none)."""
        rows = self.table_rows(MODEL_CHANGES, limit=1)
        return (rows[0]["endpoint_a"], rows[0]["endpoint_b"]) if rows else None

    def active_endpoint(self) -> str | None:
        return self.get_meta("active_endpoint")

    def prediction_columns(self, columns: Sequence[str], *, endpoint: str | None = None,
                           align: str = "text_hash") -> dict[str, list]:
        """Whole prediction columns of ``endpoint`` (default: the active one) as lists.

        ``align="text_hash"``: the endpoint's cached rows, ordered by text hash (columns the
        caller aligns itself: cheaper than a join at 100k rows). ``align="id"``: one entry per
        utterance in id order (None where the text has no cached prediction), and ``id`` is
        also a valid column.
        """
        valid = PREDICTION_COLUMNS + (("id",) if align == "id" else ())
        if align not in ("text_hash", "id"):
            raise ValueError(f"unknown align {align!r}; valid: text_hash, id")
        unknown = [c for c in columns if c not in valid]
        if unknown:
            raise ValueError(f"unknown prediction column(s) {', '.join(unknown)}; valid: {', '.join(valid)}")
        endpoint = endpoint or self.active_endpoint()
        if align == "text_hash":
            select = ", ".join(f"[{c}]" for c in columns)
            rows = self.db.execute(f"SELECT {select} FROM predictions WHERE endpoint = ? ORDER BY text_hash",
                                   [endpoint]).fetchall()
        else:
            select = ", ".join("u.id" if c == "id" else f"p.[{c}]" for c in columns)
            rows = self.db.execute(f"SELECT {select} FROM utterances u LEFT JOIN predictions p "
                                   "ON p.text_hash = u.text_hash AND p.endpoint = ? ORDER BY u.id",
                                   [endpoint]).fetchall()
        return dict(zip(columns, map(list, zip(*rows)))) if rows else {c: [] for c in columns}



class Embeddings:
    """Store methods over ``embeddings``."""

    db: Any

    if TYPE_CHECKING:  # provided by the composed Store
        def transaction(self) -> Any:
            ...

        def _bump(self) -> None:
            ...

    def encoders(self) -> list[dict]:
        """Each encoder with cached vectors: ``encoder``, ``n`` vectors, ``dim``; by name."""
        return list(self.db.query("SELECT encoder, COUNT(*) AS n, MAX(dim) AS dim FROM embeddings "
                                  "GROUP BY encoder ORDER BY encoder"))

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
            self._bump()

    def load_embeddings(self, encoder: str, ids: Sequence[int] | None = None, *,
                        chunk: int = 50_000) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings of every utterance (or of ``ids``), ordered by id, read ``chunk`` rows at a time.

        Returns ``(ids, X)`` with ``ids`` shape ``(n,)`` and ``X`` shape ``(n, dim)``
        float32. Raises :class:`MissingStepError` when any utterance lacks a vector.
        """
        source = "FROM utterances u LEFT JOIN embeddings e ON e.text_hash = u.text_hash AND e.encoder = ?"
        params: list = [encoder]
        if ids is not None:
            ids = list(ids)
            source += f" WHERE u.id IN ({','.join('?' * len(ids))})"
            params += ids
        # Read a block at a time into one preallocated array: fetching every row first held a
        # bytes object per row, their join and a copy at once (~4.5 GiB at a million 384-d
        # rows for a 1.5 GB result), and the freed blobs stayed in the heap's RSS afterwards.
        n = self.db.execute(f"SELECT COUNT(*) {source}", params).fetchone()[0]
        cursor = self.db.execute(f"SELECT u.id, e.vector, e.dim {source} ORDER BY u.id", params)
        out_ids = np.empty(n, dtype=np.int64)
        X: np.ndarray | None = None
        missing: list[int] = []
        k = 0
        while rows := cursor.fetchmany(chunk):
            present = [r for r in rows if r[1] is not None]
            missing += [r[0] for r in rows if r[1] is None]
            if missing or not present:
                continue
            if X is None:
                X = np.empty((n, present[0][2]), dtype=np.float32)
            if k + len(present) > len(X):  # rows added between the count and the read
                X = np.concatenate([X, np.empty((k + len(present) - len(X), X.shape[1]), dtype=np.float32)])
                out_ids = np.concatenate([out_ids, np.empty(len(X) - len(out_ids), dtype=np.int64)])
            block = np.frombuffer(b"".join(r[1] for r in present), dtype=np.float32)
            X[k:k + len(present)] = block.reshape(len(present), X.shape[1])
            out_ids[k:k + len(present)] = [r[0] for r in present]
            k += len(present)
        if missing:
            raise MissingStepError(
                f"{len(missing)} utterance(s) have no embedding for encoder {encoder!r} (e.g. id {missing[0]})",
                step="embed",
            )
        if X is None:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
        return (out_ids, X) if k == len(X) else (out_ids[:k].copy(), X[:k].copy())  # rows deleted meanwhile
