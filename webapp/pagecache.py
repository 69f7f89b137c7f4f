"""Whole responses of the expensive pages, built once per data state.

A page such as ``/clusters`` parses the analysis report and templates hundreds of rows (a
second at 100k utterances); the same bytes come out until something the page shows changes.
Every such write bumps :meth:`~hl_debug.storage.Store.data_version` (review decisions
included), so a response keyed on ``(database, path and query, data version)`` is current
exactly as long as that version holds. :class:`PageCache` keeps the body and its gzip,
answers a hit from ``before_request`` (after the security checks: the host, token and login
checks run first) with an ETag, and 304 when the browser's copy is current.

Concurrent misses of one key wait for the first to build it (one build per data state,
not one per request: 200 users opening ``/clusters`` at once cost one build). Only
``200 text/html`` or ``application/json`` responses of :data:`CACHED_ENDPOINTS` are kept;
responses vary only with the database and the URL (no page shows the reviewer's name).
"""

from __future__ import annotations

import gzip
import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass

from flask import Flask, Response, current_app, g, request

from webapp.compress import LEVEL, MIN_BYTES, TYPES, accepts_gzip
from webapp.db import get_store

#: Endpoints whose response depends only on the database state and the URL.
CACHED_ENDPOINTS = frozenset({
    "pages.map_view", "pages.clusters_view", "pages.issues_view", "pages.queue_view", "pages.report_view",
    "discover.discover_view", "api.clusters", "api.cluster", "api.issues", "api.queue", "api.labels",
    "api.confusion", "api.search",
})


@dataclass(frozen=True)
class Entry:
    """One cached response: its data version, ETag, content type, body and gzipped body."""

    version: int
    etag: str
    mimetype: str
    body: bytes
    gzipped: bytes | None


class PageCache:
    """Responses per ``(database, URL)`` at one data version; at most ``size`` of them.

    Thread-safe: one lock guards the entries, and one lock per key makes concurrent misses
    of that key wait for a single build.
    """

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[str, str], Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._building: dict[tuple[str, str], threading.Lock] = {}
        self.builds = 0  # how many responses were built (tests and the load benchmark read it)

    def get(self, key: tuple[str, str], version: int) -> Entry | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.version == version:
                self._entries.move_to_end(key)
                return entry
        return None

    def build_lock(self, key: tuple[str, str]) -> threading.Lock:
        with self._lock:
            return self._building.setdefault(key, threading.Lock())

    def put(self, key: tuple[str, str], version: int, response: Response) -> Entry:
        body = response.get_data()
        gz = gzip.compress(body, LEVEL, mtime=0) if len(body) >= MIN_BYTES else None
        digest = hashlib.sha1(f"{key}".encode()).hexdigest()[:12]
        entry = Entry(version, f"{digest}-{version}", response.mimetype, body, gz)
        with self._lock:
            self.builds += 1
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return entry


def _cache() -> PageCache:
    return current_app.extensions["hl_pages"]


def _respond(entry: Entry) -> Response:
    if request.if_none_match.contains_weak(entry.etag):
        response = current_app.response_class(status=304)
    else:
        gzipped = entry.gzipped is not None and accepts_gzip()
        response = current_app.response_class(entry.gzipped if gzipped else entry.body, mimetype=entry.mimetype)
        if gzipped:
            response.headers["Content-Encoding"] = "gzip"
    response.set_etag(entry.etag, weak=True)
    response.headers["Cache-Control"] = "no-cache"  # keep it, but ask each time (a 304 is cheap)
    response.vary.add("Accept-Encoding")
    return response


def serve_cached() -> Response | None:
    """``before_request``: the cached response of this URL at the current data version, if any;
    on a miss, wait for (or take) the key's build lock, released in :func:`release`."""
    if request.method != "GET" or request.endpoint not in CACHED_ENDPOINTS or not current_app.config["PAGE_CACHE"]:
        return None
    key = (current_app.config["DB"], request.full_path)
    version = get_store().data_version()
    cache = _cache()
    entry = cache.get(key, version)
    if entry is None:
        lock = cache.build_lock(key)
        lock.acquire()
        entry = cache.get(key, version)  # built while this request waited
        if entry is None:
            g.hl_page = (key, version, lock)
            return None
        lock.release()
    return _respond(entry)


def keep(response: Response) -> Response:
    """``after_request``: keep a built 200 response (before gzip: this hook runs first)."""
    pending = g.get("hl_page")
    if pending is None:
        return response
    key, version, _ = pending
    if (response.status_code != 200 or response.direct_passthrough or response.mimetype not in TYPES
            or "Content-Encoding" in response.headers or "Set-Cookie" in response.headers):
        return response
    return _respond(_cache().put(key, version, response))


def release(exc: BaseException | None = None) -> None:
    """``teardown_request``: let the requests waiting for this build go (built or failed)."""
    pending = g.pop("hl_page", None)
    if pending is not None:
        pending[2].release()


def init_app(app: Flask) -> None:
    """Register after :mod:`webapp.security` (its checks run first) and :mod:`webapp.compress`
    (so :func:`keep` sees the body before gzip)."""
    app.config.setdefault("PAGE_CACHE", True)
    app.extensions["hl_pages"] = PageCache()
    app.before_request(serve_cached)
    app.after_request(keep)
    app.teardown_request(release)
