"""One :class:`~hl_debug.storage.Store` per request, on ``g`` (the flaskr ``get_db`` pattern),
and the signal tables and inspector evidence the views ask the store about."""

from __future__ import annotations

from flask import Flask, current_app, g

from hl_debug.signals.registry import evidence as registered_evidence
from hl_debug.steps.review import signal_table
from hl_debug.storage import Evidence, Store

__all__ = ["close_store", "evidence", "get_store", "init_app", "signal_table"]


def get_store() -> Store:
    """The request's store, opened on first use; a missing database raises MissingStepError."""
    if "store" not in g:
        g.store = Store(current_app.config["DB"], create=False)
    return g.store


def close_store(exc: BaseException | None = None) -> None:
    store = g.pop("store", None)
    if store is not None:
        store.close()


def evidence() -> list[Evidence]:
    """The inspector's evidence columns: what every registered signal contributes."""
    return registered_evidence()


def init_app(app: Flask) -> None:
    app.teardown_appcontext(close_store)
