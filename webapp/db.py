"""One :class:`~hl_debug.storage.Store` per request, on ``g`` (the flaskr ``get_db`` pattern)."""

from __future__ import annotations

from flask import Flask, current_app, g

from hl_debug.storage import Store


def get_store() -> Store:
    """The request's store, opened on first use; a missing database raises MissingStepError."""
    if "store" not in g:
        g.store = Store(current_app.config["DB"], create=False)
    return g.store


def close_store(exc: BaseException | None = None) -> None:
    store = g.pop("store", None)
    if store is not None:
        store.close()


def init_app(app: Flask) -> None:
    app.teardown_appcontext(close_store)
