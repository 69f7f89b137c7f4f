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
import gzip
import hashlib
import json
import logging
import math
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from hl_debug.store import Store

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


def encode_categorical(values: Sequence[str | None]) -> dict:
    """``values`` (strings or None, length n) -> codes into the sorted distinct values."""
    categories = sorted({v for v in values if v is not None})
    index = {c: k for k, c in enumerate(categories)}
    dtype = "int8" if len(categories) < 128 else "int16" if len(categories) < 32768 else "int32"
    codes = np.fromiter((-1 if v is None else index[v] for v in values), dtype=dtype, count=len(values))
    return {"dtype": dtype, "categories": categories, "data": _b64(codes)}


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
    return {"dtype": "str", "data": list(values)}


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class PayloadCache:
    """The encoded ``/api/points`` body (and its gzipped form) per database, rebuilt only when
    the database changes.

    Two levels, because they change at very different rates: everything a pipeline run
    writes (points, predictions, issues: seconds of SQL at 100k rows) is keyed on
    :meth:`Store.map_state` without the decisions; the effective label and the latest
    decision — which change with every review click — are recomputed from the small
    ``annotations`` table and spliced in. The key of both is the response's ETag.
    """

    OVERLAY = ("label", "decision")

    def __init__(self, *, gzip_level: int = 5) -> None:
        self.gzip_level = gzip_level
        self._lock = threading.Lock()  # guards the two dicts
        self._building = threading.Lock()  # one build at a time: concurrent misses wait, then hit
        self._base: dict[str, tuple[str, bytes, np.ndarray, list]] = {}  # path -> (key, json fragment, ids, intents)
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
                if not (full and full[0] == etag):
                    full = (etag, self._build(store, state), None)
                if gzipped and full[2] is None:
                    full = (full[0], full[1], gzip.compress(full[1], self.gzip_level, mtime=0))
                with self._lock:
                    self._full[store.path] = full
        return etag, full[2] if gzipped else full[1]

    def warm(self, path: str) -> threading.Thread:
        """Build the payload for the database at ``path`` in a daemon thread, so the first
        page load after ``hl-debug serve`` finds it ready (seconds of SQL at 100k rows)."""

        def work() -> None:
            try:
                store = Store(path, create=False)
                try:
                    self.get(store, gzipped=True)
                finally:
                    store.close()
            except Exception:  # no database or a broken one: the first request reports it properly
                log.debug("could not prepare the map's payload for %s", path, exc_info=True)

        thread = threading.Thread(target=work, name="hl-map-payload", daemon=True)
        thread.start()
        return thread

    def _build(self, store: Store, state: dict) -> bytes:
        data_key = self._etag({k: v for k, v in state.items() if k != "decisions"})
        with self._lock:
            base = self._base.get(store.path)
        if not (base and base[0] == data_key):
            names = [c for c in POINT_COLUMNS if c not in self.OVERLAY]
            cols, rows = store.web_rows(columns=names)
            values = {c: [r[k] for r in rows] for k, c in enumerate(cols)}
            fragment = _dumps({"format": FORMAT, "n": len(rows),
                               "has_map": any(v is not None for v in values["x"]),
                               "columns": {c: encode_column(c, values[c]) for c in names}})
            base = (data_key, fragment, np.array(values["id"], dtype=np.int64), values["intent"])
            with self._lock:
                self._base[store.path] = base
        _, fragment, ids, intents = base
        decided, actions = store.decided_labels(), store.latest_actions()
        labels = intents if not decided else [
            decided[i] if decided.get(i) is not None else it for i, it in zip(ids.tolist(), intents)]
        overlay = {"label": encode_column("label", labels),
                   "decision": encode_column("decision", [actions.get(i) for i in ids.tolist()] if actions
                                             else [None] * len(ids))}
        return fragment[:-2] + b"," + _dumps(overlay)[1:-1] + b"}}"
