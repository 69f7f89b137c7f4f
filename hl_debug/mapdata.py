"""The map's data in compact form: what ``/api/points`` sends, its columns declared once.

The web step (:mod:`hl_debug.steps.web`) builds the pipeline's part of the payload from the
store and keeps it in the database; the web app (``webapp/points.py``) only reads it back,
splices in the review overlay (effective label, latest decision) and serves it.

At 100k utterances a JSON list of numbers or label strings per column costs ~20 MB and ~2 s
of ``json.dumps``; typed arrays cost a few bytes per point. Each column is one of:

* numeric — ``{"dtype": "float32"|"float16"|"int32"|"int8"|"float64", "data": base64}``:
  little-endian values (what ``Float32Array``/``Int32Array`` read in the browser). A missing float is
  NaN; a missing integer is ``"null"`` (the column says which value stands for it). Integers that do
  not fit their declared type travel as float64 (exact up to 2**53). Ids are numeric int32.
* categorical — ``{"dtype": "int8"|"int16"|"int32", "categories": [...], "data": base64}``:
  one code per row indexing ``categories``; ``-1`` is missing. Intents, splits and
  decisions have a few dozen values, so a row costs one byte.
* text — ``{"dtype": "str", "data": [...]}``: a plain JSON list. The utterances' texts are the
  one such column, and they are not in ``/api/points``: at 1M rows they were 60% of its 83 MB,
  and the map is drawn without them. The page fetches them once it is drawn, from
  ``/api/points/text`` (:func:`texts_body`: the same column encoding, in the same id order), for
  the hover.

:func:`decode_column` turns any of them back into a Python list (``None`` for missing), for
tests and scripts; ``webapp/static/map/decode.js`` does the same with typed arrays. Both are
checked against one golden payload, ``tests/fixtures/points_payload.json``.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import math
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np

if TYPE_CHECKING:
    from hl_debug.storage import Evidence, Store

FORMAT: Final = 6  # bump when the payload's shape changes: it is part of the ETag (3: ids as int32, 4: oos_score,
# 5: model_change, 6: the texts in their own body, /api/points/text; the payload carries its data key)

CATEGORY: Final = "category"  # wire kinds besides the numeric dtypes
TEXT: Final = "str"


@dataclass(frozen=True)
class MapColumn:
    """One column of ``/api/points``.

    ``wire`` is a numeric dtype (``float32``, ``float16``, ``int32``, ``int8``), ``"category"``
    or ``"str"``. ``overlay`` columns come from the reviews and are recomputed by the web app
    with every decision; the others come from the pipeline and are kept by the web step.
    """

    name: str
    wire: str
    overlay: bool = False


# Enough to colour, filter, hover and fill the inspector's first view. Scores only colour the
# map (the inspector shows the database's values): float16's three significant digits are
# plenty and halve their size.
COLUMNS: Final[tuple[MapColumn, ...]] = (
    MapColumn("id", "int32"),
    MapColumn("x", "float32"),
    MapColumn("y", "float32"),
    MapColumn("label", CATEGORY, overlay=True),  # the effective label
    MapColumn("intent", CATEGORY),  # the export's label
    MapColumn("usage", CATEGORY),
    MapColumn("cluster_id", "int32"),
    MapColumn("predicted_label", CATEGORY),
    MapColumn("confidence", "float16"),
    MapColumn("entropy", "float16"),
    MapColumn("issue_score", "float16"),
    MapColumn("suggested_label", CATEGORY),
    MapColumn("flagged", "int8"),
    MapColumn("oos_score", "float16"),  # the out-of-scope signal's score (missing before it ran)
    # how the last retrain changed the row's answer: fixed, broken, changed (among wrong); missing = unchanged
    MapColumn("model_change", CATEGORY),
    MapColumn("decision", CATEGORY, overlay=True),  # the latest review action
)
POINT_COLUMNS: Final = tuple(c.name for c in COLUMNS)
NUMERIC: Final = {c.name: c.wire for c in COLUMNS if c.wire not in (CATEGORY, TEXT)}
CATEGORICAL: Final = tuple(c.name for c in COLUMNS if c.wire == CATEGORY)
OVERLAY: Final = tuple(c.name for c in COLUMNS if c.overlay)
BASE_COLUMNS: Final = tuple(c.name for c in COLUMNS if not c.overlay)

STORED_NAME: Final = "web_map_payload"  # the reports row the web step keeps the payload's base in
TEXTS_STORED_NAME: Final = "web_map_texts"  # ... and the gzipped /api/points/text body in
# gzip level of the kept base: at 100k rows 3.5 MB in 0.9 s, where level 1 gives 4.05 MB in 0.2 s. The
# base is compressed once per pipeline state and then sent to every user; the float columns do not
# compress at any level.
GZIP_LEVEL: Final = 6

_INT_NULL = {"int8": -128, "int16": -32768, "int32": -(2**31)}


def wire_types() -> dict[str, str]:
    """``{column: wire kind}`` in payload order: what the map page's JS is told."""
    return {c.name: c.wire for c in COLUMNS}


def _b64(arr: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<"), copy=False)
                            .tobytes()).decode("ascii")


def encode_numeric(values: Sequence[Any] | np.ndarray, dtype: str) -> dict:
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
    known = np.not_equal(arr, None)  # type: ignore[call-overload]  # elementwise "is not None" at C speed
    # a set and a dict, not np.unique: sorting 1M strings costs 0.45 s, hashing them 0.14 s (the
    # label overlay is encoded again on every review decision); sorted() orders by code point
    strs = [str(v) for v in arr[known].tolist()]
    categories = sorted(set(strs))
    dtype = "int8" if len(categories) < 128 else "int16" if len(categories) < 32768 else "int32"
    code = {c: k for k, c in enumerate(categories)}
    out = np.full(len(arr), -1, dtype=dtype)
    out[known] = np.fromiter(map(code.__getitem__, strs), dtype=dtype, count=len(strs))
    return {"dtype": dtype, "categories": categories, "data": _b64(out)}


def decode_column(col: dict) -> list:
    """Any encoded column back to a list of Python values (None for missing)."""
    if col["dtype"] == TEXT:
        return list(col["data"])
    arr = np.frombuffer(base64.b64decode(col["data"]), dtype=np.dtype(col["dtype"]).newbyteorder("<"))
    if "categories" in col:
        cats = col["categories"]
        return [None if c < 0 else cats[c] for c in arr.tolist()]
    if arr.dtype.kind == "f":
        return [None if math.isnan(v) else v for v in arr.tolist()]
    null = col.get("null")
    return [None if v == null else v for v in arr.tolist()]


def encode_column(name: str, values: Sequence[Any] | np.ndarray) -> dict:
    """One of :data:`POINT_COLUMNS` in its compact form."""
    if name in NUMERIC:
        return encode_numeric(values, NUMERIC[name])
    if name in CATEGORICAL:
        return encode_categorical(values)
    return {"dtype": TEXT, "data": values.tolist() if isinstance(values, np.ndarray) else list(values)}


def encode_points(columns: dict[str, list], key: str = "") -> dict:
    """Plain column lists (``{name: [value per row]}``, ``id`` required) -> the ``/api/points``
    body (``key``: the :func:`data_key` of the state it shows)."""
    n = len(columns["id"])
    return {"format": FORMAT, "key": key, "n": n, "has_map": any(v is not None for v in columns.get("x", ())),
            "columns": {name: encode_column(name, columns.get(name, [None] * n)) for name in POINT_COLUMNS}}


def texts_body(key: str, texts: Sequence[str] | np.ndarray) -> bytes:
    """The ``/api/points/text`` body: every utterance's text in id order (the order of the
    payload's rows), as one text column, with the :func:`data_key` of the state it was read
    in — the page uses it only with a payload of the same key."""
    return dumps({"format": FORMAT, "key": key, "n": len(texts), "columns": {"text": encode_column("text", texts)}})


def map_texts(store: Store) -> list[str]:
    """Every utterance's text in id order (the payload's row order)."""
    return store.map_columns(["text"])["text"]


def gzipped_texts(store: Store, key: str) -> bytes:
    """The gzip-encoded :func:`texts_body` of the store's texts (1M rows: ~1 s to read, ~3 s
    to compress)."""
    return gzip.compress(texts_body(key, map_texts(store)), GZIP_LEVEL, mtime=0)


def keep_texts(store: Store, key: str, gzipped: bytes) -> None:
    """Keep the gzipped texts body of state ``key`` for the web app's next start (a cache,
    as :func:`keep_base`: the start-up thread then reads it back instead of ~4 s of CPU at
    1M rows while the first page paints)."""
    store.save_cache(TEXTS_STORED_NAME, {"key": key, "gzip": base64.b64encode(gzipped).decode("ascii")})


def stored_texts(store: Store, key: str) -> bytes | None:
    """The gzipped texts body kept under ``key`` (None when none is kept, or one of another state)."""
    doc = store.report(TEXTS_STORED_NAME)
    if not (isinstance(doc, dict) and doc.get("key") == key and isinstance(doc.get("gzip"), str)):
        return None
    return base64.b64decode(doc["gzip"])


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON, as the payload is sent."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def state_key(state: dict) -> str:
    """A short digest of a :meth:`Store.map_state` (and the payload format)."""
    return hashlib.sha1(dumps([FORMAT, state])).hexdigest()[:20]


def data_key(state: dict) -> str:
    """The key of the pipeline's part of the payload: the state without the decisions."""
    return state_key({k: v for k, v in state.items() if k != "decisions"})


def map_columns(store: Store, evidence: Sequence[Evidence] = ()) -> dict[str, np.ndarray]:
    """The payload's pipeline columns (:data:`BASE_COLUMNS`), one entry per utterance in id
    order, from the store's joined read model (:meth:`Store.map_columns`). ``evidence`` is the
    signal registry's (:func:`hl_debug.signals.registry.evidence`): where the scores come from.

    ``id`` comes back as int64, numeric columns as float arrays (NaN for missing), the
    others as object arrays (None for missing), ready for the vectorised encoders. (Reading
    the tables one by one and aligning them here costs more CPU at 100k rows: 1.0 s against
    the join's 0.8 s.) A column that no registered signal provides (``oos_score`` without
    the out-of-scope signal) comes back all missing.
    """
    from hl_debug.storage.predictions import MODEL_CHANGE_EVIDENCE

    evidence = (*evidence, MODEL_CHANGE_EVIDENCE)  # the retrain step's, not a signal's
    have = set(store.inspector_columns(evidence))  # a column no registered signal provides is all missing
    values = store.map_columns([c for c in BASE_COLUMNS if c in have], evidence=evidence)
    n = len(values["id"])
    return {c: np.array(values[c] if c in values else [None] * n,
                        dtype=np.int64 if c == "id" else np.float64 if c in NUMERIC else object)
            for c in BASE_COLUMNS}


@dataclass
class GzipHead:
    """The gzip of a payload's ``prefix``, cut at a byte boundary so that any tail can follow:
    the gzip header and the prefix's deflate blocks up to a ``Z_SYNC_FLUSH`` (``data``), the
    prefix's CRC-32 and its length. Kept with the base, so a server start does not recompress
    it (2.6 s at 1M rows)."""

    data: bytes
    crc: int
    size: int

    @classmethod
    def of(cls, prefix: bytes, level: int = GZIP_LEVEL) -> GzipHead:
        z = zlib.compressobj(level, zlib.DEFLATED, 31)  # 31: a gzip header, mtime 0
        return cls(z.compress(prefix) + z.flush(zlib.Z_SYNC_FLUSH), zlib.crc32(prefix), len(prefix))

    def member(self, tail: bytes, level: int = GZIP_LEVEL) -> bytes:
        """One valid gzip member of ``prefix + tail``, deterministic for given bytes: the head,
        the tail's own raw deflate blocks (deflate streams may be cut at a sync flush and
        continued by blocks that refer only to their own data) and the trailer of the whole."""
        z = zlib.compressobj(level, zlib.DEFLATED, -15)
        trailer = struct.pack("<II", zlib.crc32(tail, self.crc), (self.size + len(tail)) & 0xFFFFFFFF)
        return self.data + z.compress(tail) + z.flush() + trailer


@dataclass
class BasePayload:
    """The pipeline's part of one payload: the JSON up to the overlay columns (``prefix``,
    ending in the comma the overlay follows), and the ids (int64) and original intents
    (object array) the overlay is made from. ``key`` is :func:`data_key` of the state it
    was built from. ``gzip_head`` is the prefix's :class:`GzipHead` once made (see
    :meth:`gzip`)."""

    key: str
    prefix: bytes
    ids: np.ndarray
    intents: np.ndarray
    gzip_head: GzipHead | None = None

    @classmethod
    def encode(cls, key: str, columns: dict[str, np.ndarray]) -> BasePayload:
        """From :func:`map_columns`' columns."""
        body = dumps({"format": FORMAT, "key": key, "n": len(columns["id"]),
                      "has_map": bool((~np.isnan(columns["x"])).any()),
                      "columns": {c: encode_column(c, columns[c]) for c in BASE_COLUMNS}})
        return cls(key, body[:-2] + b",", columns["id"], columns["intent"])

    def gzip(self, tail: bytes) -> bytes:
        """The gzip of ``prefix + tail``; the prefix is compressed once, on first use."""
        if self.gzip_head is None:
            self.gzip_head = GzipHead.of(self.prefix)
        return self.gzip_head.member(tail)

    def to_stored(self) -> dict[str, Any]:
        """A JSON document holding this base (ids as base64 int64, intents as a categorical
        column, the gzip head as base64 when made)."""
        doc = {"key": self.key, "ids": _b64(self.ids.astype(np.int64)), "intents": encode_categorical(self.intents),
               "prefix": self.prefix.decode("utf-8")}
        if self.gzip_head is not None:
            doc["gzip"] = {"data": base64.b64encode(self.gzip_head.data).decode("ascii"), "crc": self.gzip_head.crc,
                           "size": self.gzip_head.size}
        return doc

    @classmethod
    def from_stored(cls, doc: dict[str, Any]) -> BasePayload:
        """The inverse of :meth:`to_stored` (a document kept without a gzip head, or with one
        of another prefix, gives a base that compresses on first use)."""
        ids = np.frombuffer(base64.b64decode(doc["ids"]), dtype="<i8").astype(np.int64)
        intents = np.array(decode_column(doc["intents"]), dtype=object)
        prefix = doc["prefix"].encode("utf-8")
        head, kept = None, doc.get("gzip")
        if isinstance(kept, dict) and kept.get("size") == len(prefix):
            head = GzipHead(base64.b64decode(kept["data"]), int(kept["crc"]), int(kept["size"]))
        return cls(doc["key"], prefix, ids, intents, head)


def build_base(store: Store, key: str, evidence: Sequence[Evidence] = ()) -> BasePayload:
    """Encode the store's pipeline columns now (``evidence`` as for :func:`map_columns`)."""
    return BasePayload.encode(key, map_columns(store, evidence))


def stored_base(store: Store, key: str) -> BasePayload | None:
    """The base kept in the store under ``key`` (None when none is kept, or one of another state)."""
    doc = store.report(STORED_NAME)
    return BasePayload.from_stored(doc) if isinstance(doc, dict) and doc.get("key") == key else None


def keep_base(store: Store, base: BasePayload) -> None:
    """Keep ``base`` and its gzip head (made here when missing) in the store for the web
    app's next start (a cache: keeping it does not change the store's data version, so it
    never invalidates itself)."""
    if base.gzip_head is None:
        base.gzip_head = GzipHead.of(base.prefix)
    store.save_cache(STORED_NAME, base.to_stored())
