"""The map's data in compact form: what ``/api/points`` sends, built once per database state.

At 100k utterances a JSON list of numbers or label strings per column costs ~20 MB and ~2 s
of ``json.dumps``; typed arrays cost a few bytes per point. Each column is one of:

* numeric — ``{"dtype": "float32"|"float16"|"int32"|"int8"|"float64", "data": base64}``:
  little-endian values (what ``Float32Array``/``Int32Array`` read in the browser). A missing float is
  NaN; a missing integer is ``"null"`` (the column says which value stands for it).
* categorical — ``{"dtype": "int8"|"int16"|"int32", "categories": [...], "data": base64}``:
  one code per row indexing ``categories``; ``-1`` is missing. Intents, splits and
  decisions have a few dozen values, so a row costs one byte.
* text — ``{"dtype": "str", "data": [...]}``: a plain JSON list (the hover shows it).

:func:`decode_column` turns any of them back into a Python list (``None`` for missing), for
tests and scripts; ``static/map.js`` does the same with typed arrays.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import sqlite3
import threading
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from hl_debug.storage import Store

log = logging.getLogger(__name__)

FORMAT = 2  # bump when the payload's shape changes: it is part of the ETag

# Scores only colour the map (the inspector shows the database's values): float16's three
# significant digits are plenty and halve their size.
NUMERIC = {"x": "float32", "y": "float32", "cluster_id": "int32", "confidence": "float16", "entropy": "float16",
           "issue_score": "float16", "flagged": "int8"}
CATEGORICAL = ("label", "intent", "usage", "predicted_label", "suggested_label", "decision")
TEXT = ("text",)
# Columns /api/points sends: enough to colour, filter, hover and fill the inspector's first view.
POINT_COLUMNS = ("id", "x", "y", "text", "label", "intent", "usage", "cluster_id", "predicted_label",
                 "confidence", "entropy", "issue_score", "suggested_label", "flagged", "decision")

_INT_NULL = {"int8": -128, "int16": -32768, "int32": -(2**31)}
STORED_NAME = "web_map_payload"  # the reports row PayloadCache.keep stores the payload's base in


def _b64(arr: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<"), copy=False)
                            .tobytes()).decode("ascii")


def encode_numeric(values: Sequence[Any], dtype: str) -> dict:
    """``values`` (numbers or None, length n) -> a numeric column of ``dtype``.

    Integers that do not fit ``dtype`` are sent as float64 (exact up to 2**53) rather than
    wrapped around.
    """
    arr = np.array(values, dtype=np.float64)  # None -> NaN
    if dtype.startswith("float"):
        with np.errstate(over="ignore"):  # beyond float32's range: inf, then NaN below
            out = arr.astype(dtype)
        out[~np.isfinite(out)] = np.nan
        return {"dtype": dtype, "data": _b64(out)}
    null, info = _INT_NULL[dtype], np.iinfo(dtype)
    known = arr[~np.isnan(arr)]
    if known.size and (known.min() <= info.min or known.max() > info.max or (known % 1).any()):
        return encode_numeric(values, "float64")  # info.min is the null marker
    return {"dtype": dtype, "null": null, "data": _b64(np.where(np.isnan(arr), null, arr).astype(dtype))}


def encode_categorical(values: Sequence[str | None] | np.ndarray) -> dict:
    """``values`` (strings or None, length n) -> codes into the sorted distinct values."""
    arr = np.asarray(values, dtype=object) if len(values) else np.zeros(0, dtype=object)
    known = np.not_equal(arr, None)
    # np.unique sorts by code point, as sorted() does; return_inverse gives every row's code at C speed
    categories, codes = np.unique(arr[known].astype(str), return_inverse=True)
    dtype = "int8" if len(categories) < 128 else "int16" if len(categories) < 32768 else "int32"
    out = np.full(len(arr), -1, dtype=dtype)
    out[known] = codes
    return {"dtype": dtype, "categories": categories.tolist(), "data": _b64(out)}


def decode_column(col: dict) -> list:
    """Any encoded column back to a list of Python values (None for missing)."""
    if col["dtype"] == "str":
        return list(col["data"])
    arr = np.frombuffer(base64.b64decode(col["data"]), dtype=np.dtype(col["dtype"]).newbyteorder("<"))
    if "categories" in col:
        cats = col["categories"]
        return [None if c < 0 else cats[c] for c in arr.tolist()]
    if arr.dtype.kind == "f":
        return [None if math.isnan(v) else v for v in arr.tolist()]
    null = col.get("null")
    return [None if v == null else v for v in arr.tolist()]


def encode_points(columns: dict[str, list]) -> dict:
    """Plain column lists (``{name: [value per row]}``, ``id`` required) -> the ``/api/points`` body."""
    n = len(columns["id"])
    return {"format": FORMAT, "n": n, "has_map": any(v is not None for v in columns.get("x", ())),
            "columns": {name: encode_column(name, columns.get(name, [None] * n)) for name in POINT_COLUMNS}}


def encode_column(name: str, values: Sequence[Any]) -> dict:
    """One of :data:`POINT_COLUMNS` in its compact form."""
    if name in NUMERIC:
        return encode_numeric(values, NUMERIC[name])
    if name in CATEGORICAL:
        return encode_categorical(values)
    return {"dtype": "str", "data": values.tolist() if isinstance(values, np.ndarray) else list(values)}


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _positions(keys: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Row of each ``wanted`` id in sorted ``keys`` (shape of ``wanted``), -1 where absent."""
    if not len(keys):
        return np.full(len(wanted), -1, dtype=np.int64)
    pos = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
    return np.where(keys[pos] == wanted, pos, -1)


def map_columns(store: Store) -> dict[str, Any]:
    """The payload's columns except the review overlay (``label``, ``decision``), one entry per
    utterance in id order, from one joined read (:meth:`Store.web_rows`).

    ``id`` comes back as int64, numeric columns as float arrays (NaN for missing), the
    others as object arrays (None for missing), ready for the vectorised encoders. (Reading
    the tables one by one and aligning them here costs more CPU at 100k rows: 1.0 s against
    the join's 0.8 s.)
    """
    names = [c for c in POINT_COLUMNS if c not in PayloadCache.OVERLAY]
    cols, rows = store.web_rows(columns=names)
    values = dict(zip(cols, zip(*rows))) if rows else {c: () for c in cols}
    return {c: np.array(values[c], dtype=np.int64 if c == "id" else np.float64 if c in NUMERIC else object)
            for c in cols}


class PayloadCache:
    """The encoded ``/api/points`` body (and its gzipped form) per database, rebuilt only when
    the database changes.

    Two levels, because they change at very different rates: everything a pipeline run
    writes (points, predictions, issues: ~1 s of SQL and encoding at 100k rows) is keyed on
    :meth:`Store.map_state` without the decisions; the effective label and the latest
    decision — which change with every review click — are recomputed from the small
    ``annotations`` table and spliced in. The key of both is the response's ETag.

    The gzipped body is built the same way: the base part is compressed once, up to a
    ``Z_SYNC_FLUSH``, and each overlay continues from a copy of that compressor, so a
    decision costs the gzip of the two overlay columns (~0.3 MB at 100k), not of all 9 MB.

    :meth:`warm` also keeps the base part in the database (the ``reports`` row
    :data:`STORED_NAME`, with its key), so the next start of the app on an unchanged
    database reads it back (0.3 s at 100k, its gzip included) instead of rebuilding it (~2 s). Requests
    never write it: a pipeline run holding the database's write lock must not stall a page.
    """

    OVERLAY = ("label", "decision")

    def __init__(self, *, gzip_level: int = 1) -> None:
        # level 1: at 100k rows 0.3 s for 3.9 MB, where level 5 takes 0.7 s for 3.4 MB; the
        # random float columns do not compress at any level, and the app is mostly on localhost
        self.gzip_level = gzip_level
        self._lock = threading.Lock()  # guards the two dicts
        self._building = threading.Lock()  # one build at a time: concurrent misses wait, then hit
        self._base: dict[str, _Base] = {}  # path -> the pipeline's part of the payload
        self._full: dict[str, tuple[str, bytes, bytes | None]] = {}  # path -> (etag, body, gzipped body)

    @staticmethod
    def _etag(state: dict) -> str:
        return hashlib.sha1(_dumps([FORMAT, state])).hexdigest()[:20]

    def etag(self, store: Store) -> str:
        """The ETag of the store's current map data (cheap: a few tiny queries)."""
        return self._etag(store.map_state())

    def get(self, store: Store, *, gzipped: bool = False) -> tuple[str, bytes]:
        """``(etag, body)`` for the store's current state; ``gzipped`` gives the gzip-encoded body."""
        state = store.map_state()
        etag = self._etag(state)
        with self._lock:
            full = self._full.get(store.path)
        if not (full and full[0] == etag and (full[2] is not None or not gzipped)):
            with self._building:
                with self._lock:
                    full = self._full.get(store.path)
                if not (full and full[0] == etag and (full[2] is not None or not gzipped)):
                    full = self._build(store, state, gzipped=gzipped)
                    with self._lock:
                        self._full[store.path] = full
        return etag, full[2] if gzipped else full[1]  # type: ignore[return-value]

    def warm(self, path: str) -> threading.Thread:
        """Build the payload for the database at ``path`` in a daemon thread, so the first
        page load after ``hl-debug serve`` finds it ready (about a second at 100k rows)."""
        return warm_in_background(path, self.prepare, name="hl-map-payload")

    def prepare(self, store: Store) -> bool:
        """Build (or read back) the store's current payload and its gzip, then :meth:`keep`
        it (what :meth:`warm` and the pipeline's last step run). True when it was built here,
        False when the database already held it."""
        self.get(store, gzipped=True)
        with self._lock:
            base = self._base.get(store.path)
        built = base is not None and not base.stored
        self.keep(store)
        return built

    def keep(self, store: Store) -> None:
        """Store the base part in the database when it was built here, for the next start. A
        database that cannot be written (read-only, locked by a long pipeline run) only
        costs that next start the rebuild."""
        with self._lock:
            base = self._base.get(store.path)
        if base is None or base.stored:
            return
        try:
            store.save_report(STORED_NAME, base.to_stored())
        except sqlite3.Error as exc:
            log.info("could not keep the map's data in %s for the next start: %s", store.path, exc)
            return
        base.stored = True

    def _build(self, store: Store, state: dict, *, gzipped: bool) -> tuple[str, bytes, bytes | None]:
        data_key = self._etag({k: v for k, v in state.items() if k != "decisions"})
        with self._lock:
            base = self._base.get(store.path)
        if not (base and base.key == data_key):
            stored = store.report(STORED_NAME)
            base = (_Base.from_stored(stored, self.gzip_level) if isinstance(stored, dict)
                    and stored.get("key") == data_key else _Base.encode(data_key, map_columns(store), self.gzip_level))
            with self._lock:
                self._base[store.path] = base
        ids = base.ids
        actions = store.latest_actions()
        decided = {i: lab for i, lab in store.decided_labels().items() if lab is not None}  # None keeps the intent
        labels = base.intents
        if decided:
            labels = labels.copy()
            pos = _positions(ids, np.fromiter(decided, dtype=np.int64, count=len(decided)))
            labels[pos[pos >= 0]] = np.array(list(decided.values()), dtype=object)[pos >= 0]
        decisions = np.full(len(ids), None, dtype=object)
        if actions:
            pos = _positions(ids, np.fromiter(actions, dtype=np.int64, count=len(actions)))
            decisions[pos[pos >= 0]] = np.array(list(actions.values()), dtype=object)[pos >= 0]
        tail = _dumps({"label": encode_column("label", labels),
                       "decision": encode_column("decision", decisions)})[1:-1] + b"}}"
        return self._etag(state), base.prefix + tail, base.gzip(tail) if gzipped else None


class _Base:
    """The pipeline's part of one payload: the JSON up to the overlay columns, the ids and
    original intents the overlay is made from, and (made on first use) a gzip stream of the
    JSON flushed to a byte boundary, ready to be continued."""

    def __init__(self, key: str, prefix: bytes, ids: np.ndarray, intents: np.ndarray, gzip_level: int,
                 *, stored: bool = False) -> None:
        self.key, self.prefix, self.ids, self.intents = key, prefix, ids, intents
        self.stored = stored  # whether the database holds this base (see PayloadCache.keep)
        self._level = gzip_level
        self._zip: tuple[bytes, Any] | None = None

    @classmethod
    def encode(cls, key: str, columns: dict[str, Any], gzip_level: int) -> _Base:
        """From :func:`map_columns`' columns."""
        names = [c for c in POINT_COLUMNS if c not in PayloadCache.OVERLAY]
        body = _dumps({"format": FORMAT, "n": len(columns["id"]), "has_map": bool((~np.isnan(columns["x"])).any()),
                       "columns": {c: encode_column(c, columns[c]) for c in names}})
        # the overlay's columns follow the comma
        return cls(key, body[:-2] + b",", columns["id"], columns["intent"], gzip_level)

    def to_stored(self) -> dict[str, Any]:
        """A JSON document holding this base (ids as base64 int64, intents as a categorical column)."""
        return {"key": self.key, "ids": _b64(self.ids.astype(np.int64)), "intents": encode_categorical(self.intents),
                "prefix": self.prefix.decode("utf-8")}

    @classmethod
    def from_stored(cls, doc: dict[str, Any], gzip_level: int) -> _Base:
        """The inverse of :meth:`to_stored`."""
        ids = np.frombuffer(base64.b64decode(doc["ids"]), dtype="<i8").astype(np.int64)
        intents = np.array(decode_column(doc["intents"]), dtype=object)
        return cls(doc["key"], doc["prefix"].encode("utf-8"), ids, intents, gzip_level, stored=True)

    def gzip(self, tail: bytes) -> bytes:
        """gzip of ``prefix + tail``: one valid gzip member, deterministic for given bytes."""
        if self._zip is None:
            z = zlib.compressobj(self._level, zlib.DEFLATED, 31)  # 31: gzip header, mtime 0
            self._zip = (z.compress(self.prefix) + z.flush(zlib.Z_SYNC_FLUSH), z)
        head, z = self._zip
        z = z.copy()
        return head + z.compress(tail) + z.flush()


def warm_in_background(path: str, work: Callable[[Store], Any], *, name: str) -> threading.Thread:
    """Run ``work(store)`` on the database at ``path`` in a daemon thread; errors are logged
    at debug level (the first request reports a missing or broken database properly)."""

    def run() -> None:
        try:
            store = Store(path, create=False)
            try:
                work(store)
            finally:
                store.close()
        except Exception:
            log.debug("could not prepare %s for %s", name, path, exc_info=True)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread
