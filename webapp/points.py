"""Serving the map's data: ``/api/points`` from the payload the web step keeps, with the reviews,
and ``/api/points/text``, the utterances' texts the page fetches once the map is drawn.

The payload's format, its columns and its encoders live in :mod:`hl_debug.mapdata`; the web
step (:mod:`hl_debug.steps.web`) builds the pipeline's part and keeps it in the database.
Here :class:`PayloadCache` reads that part back (or builds it, for a database the web step
has not seen), splices in the effective label and the latest decision, and keeps the body
and its gzip per database state; the ETag is that state's key.
"""

from __future__ import annotations

import gzip
import logging
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from hl_debug import mapdata
from hl_debug.errors import StoreError
from hl_debug.mapdata import BasePayload, encode_column
from hl_debug.signals.registry import evidence
from hl_debug.storage import Store

log = logging.getLogger(__name__)


def _positions(keys: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Row of each ``wanted`` id in sorted ``keys`` (shape of ``wanted``), -1 where absent."""
    if not len(keys):
        return np.full(len(wanted), -1, dtype=np.int64)
    pos = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
    return np.where(keys[pos] == wanted, pos, -1)


class PayloadCache:
    """The encoded ``/api/points`` body (and its gzipped form) per database, rebuilt only when
    the database changes.

    Two levels, because they change at very different rates: everything a pipeline run
    writes (points, predictions, issues: ~1 s of SQL and encoding at 100k rows) is the
    :class:`~hl_debug.mapdata.BasePayload`, keyed on :meth:`Store.map_state` without the
    decisions; the effective label and the latest decision — which change with every review
    click — are recomputed from the small ``annotations`` table and spliced in. The key of
    both is the response's ETag.

    The gzipped body is built the same way: the base part is compressed once, up to a
    ``Z_SYNC_FLUSH`` (:class:`~hl_debug.mapdata.GzipHead`, kept in the database with the
    base), and each overlay's deflate blocks follow it, so a decision costs the gzip of the
    two overlay columns (~0.3 MB at 100k), not of all 9 MB (83 MB at 1M).

    The base is read from the database (the ``reports`` row :data:`~hl_debug.mapdata.STORED_NAME`
    the web step keeps, its gzip head included; 0.3 s at 100k) when it holds the current state's,
    else built here (~2 s); :meth:`keep` (run by the app's start-up thread, never by a request:
    a pipeline run holding the database's write lock must not stall a page) stores a base
    built here for the next start.
    """


    def __init__(self) -> None:
        self._lock = threading.Lock()  # guards the two dicts
        self._building = threading.Lock()  # one build at a time: concurrent misses wait, then hit
        self._base: dict[str, _Base] = {}  # path -> the pipeline's part of the payload
        self._full: dict[str, tuple[str, bytes, bytes | None]] = {}  # path -> (etag, body, gzipped body)

    def etag(self, store: Store, state: dict | None = None) -> str:
        """The ETag of the store's current map data (cheap: a few tiny queries; none when
        ``state``, its :meth:`Store.map_state`, is given)."""
        return mapdata.state_key(store.map_state() if state is None else state)

    def get(self, store: Store, *, gzipped: bool = False, state: dict | None = None) -> tuple[str, bytes]:
        """``(etag, body)`` for the store's current state (``state``: its :meth:`Store.map_state`,
        when the caller has read it); ``gzipped`` gives the gzip-encoded body."""
        state = store.map_state() if state is None else state
        etag = mapdata.state_key(state)
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
        it. True when it was built here, False when the database already held it."""
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
        if base is None or (base.stored and base.head_kept):
            return
        try:
            mapdata.keep_base(store, base.payload)
        except StoreError as exc:
            log.info("could not keep the map's data in %s for the next start: %s", store.path, exc)
            return
        base.stored = base.head_kept = True

    def _build(self, store: Store, state: dict, *, gzipped: bool) -> tuple[str, bytes, bytes | None]:
        key = mapdata.data_key(state)
        with self._lock:
            base = self._base.get(store.path)
        if not (base and base.payload.key == key):
            stored = mapdata.stored_base(store, key)
            base = _Base(stored or mapdata.build_base(store, key, evidence()), stored=stored is not None)
            with self._lock:
                self._base[store.path] = base
        ids = base.payload.ids
        actions = store.latest_actions()
        decided = {i: lab for i, lab in store.decided_labels().items() if lab is not None}  # None keeps the intent
        labels = base.payload.intents
        if decided:
            labels = labels.copy()
            pos = _positions(ids, np.fromiter(decided, dtype=np.int64, count=len(decided)))
            labels[pos[pos >= 0]] = np.array(list(decided.values()), dtype=object)[pos >= 0]
        decisions = np.full(len(ids), None, dtype=object)
        if actions:
            pos = _positions(ids, np.fromiter(actions, dtype=np.int64, count=len(actions)))
            decisions[pos[pos >= 0]] = np.array(list(actions.values()), dtype=object)[pos >= 0]
        tail = mapdata.dumps({"label": encode_column("label", labels),
                              "decision": encode_column("decision", decisions)})[1:-1] + b"}}"
        return mapdata.state_key(state), base.payload.prefix + tail, base.payload.gzip(tail) if gzipped else None


class TextCache:
    """The ``/api/points/text`` body (and its gzip) per database, rebuilt only when the
    pipeline's data changes (its key is :func:`~hl_debug.mapdata.data_key`: a review
    decision does not change a text). Not in the map's payload because the map is drawn
    without it: at 1M rows the texts are 60% of the bytes the first paint would wait for. The
    web step keeps the gzipped body in the database (:func:`~hl_debug.mapdata.keep_texts`);
    the start-up thread reads it back after the payload, or builds and keeps it (1M texts:
    ~1 s to read, ~3 s to compress) when none of this state is kept, else the first request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._built: dict[str, tuple[str, bytes | None, bytes]] = {}  # path -> (key, body or None, gzipped body)

    def key(self, store: Store, state: dict | None = None) -> str:
        """The ETag: the key of the store's current pipeline data."""
        return mapdata.data_key(store.map_state() if state is None else state)

    def get(self, store: Store, *, gzipped: bool = False, state: dict | None = None) -> tuple[str, bytes]:
        """``(key, body)`` for the store's current data; ``gzipped`` gives the gzip-encoded body."""
        key = self.key(store, state)
        with self._lock:  # one build at a time: a concurrent miss waits, then hits
            built = self._built.get(store.path)
            if built is None or built[0] != key:
                zipped = mapdata.stored_texts(store, key)  # the web step's, or an earlier start's
                if zipped is None:
                    zipped = mapdata.gzipped_texts(store, key)
                    try:
                        mapdata.keep_texts(store, key, zipped)
                    except StoreError as exc:  # read-only or locked: the next start builds them again
                        log.info("could not keep the map's texts in %s for the next start: %s", store.path, exc)
                built = (key, None, zipped)
                self._built[store.path] = built
            if not gzipped and built[1] is None:  # a client without gzip: inflated once, on demand
                built = (key, gzip.decompress(built[2]), built[2])
                self._built[store.path] = built
        return key, built[2] if gzipped else built[1]


class _Base:
    """A :class:`~hl_debug.mapdata.BasePayload` being served, and whether the database holds
    it (with its gzip head: see :meth:`PayloadCache.keep`)."""

    def __init__(self, payload: BasePayload, *, stored: bool = False) -> None:
        self.payload = payload
        self.stored = stored  # whether the database holds this base (see PayloadCache.keep)
        # and its gzip head (one kept before heads were kept gets it at the next keep)
        self.head_kept = stored and payload.gzip_head is not None


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
