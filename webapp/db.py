"""The request's :class:`~hl_debug.storage.Store` on ``g``, and the signal tables and
inspector evidence the views ask the store about.

Under waitress several threads serve the app at once. SQLite connections are not shared
between threads: each request thread keeps its own connection to the database (opened on
its first request, reused by its later ones — opening one costs a schema check, and closing
the last one a WAL checkpoint, a few milliseconds a request) and the database runs in WAL
mode, so readers never wait for the one writer. A connection is reopened when the file at
the path is another one (a database rebuilt while serving). No transaction outlives a
request: the store's writes run in ``Store.transaction()``, which commits or rolls back.
"""

from __future__ import annotations

import os
import threading

from flask import Flask, current_app, g

from hl_debug.signals.registry import evidence as registered_evidence
from hl_debug.steps.review import signal_table
from hl_debug.storage import Evidence, Store

__all__ = ["close_store", "evidence", "get_store", "init_app", "signal_table"]

_local = threading.local()  # .stores: {path: (file identity, Store)} of this thread


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def get_store() -> Store:
    """The request's store (this thread's connection, opened on first use); a missing
    database raises MissingStepError."""
    if "store" not in g:
        path = current_app.config["DB"]
        stores: dict = getattr(_local, "stores", None) or {}
        _local.stores = stores
        ident = _identity(path) if current_app.config["REUSE_CONNECTIONS"] and path != ":memory:" else None
        kept = stores.pop(path, None)
        if kept is not None and (ident is None or kept[0] != ident):
            kept[1].close()
            kept = None
        store = kept[1] if kept is not None else Store(path, create=False)
        g.store = store
        g.store_identity = ident
    return g.store


def close_store(exc: BaseException | None = None) -> None:
    """Give the request's store back to its thread (or close it when connections are not reused)."""
    store = g.pop("store", None)
    ident = g.pop("store_identity", None)
    if store is None:
        return
    if ident is None:
        store.close()
        return
    _local.stores[store.path] = (ident, store)


def evidence() -> list[Evidence]:
    """The inspector's evidence columns: what every registered signal contributes."""
    return registered_evidence()


def init_app(app: Flask) -> None:
    app.config.setdefault("REUSE_CONNECTIONS", True)
    app.teardown_appcontext(close_store)
