"""Engines the storage contract suite runs against: each must pass every test in
``test_contract.py``. A second engine (e.g. Postgres) adds one entry to :data:`ENGINES`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hl_debug.storage import Store, StoreProtocol

TINY_EXPORT = Path(__file__).resolve().parents[1] / "fixtures" / "tiny_export.json"


def _sqlite_file(tmp_path: Path) -> StoreProtocol:
    return Store(tmp_path / "contract.db")


def _sqlite_memory(tmp_path: Path) -> StoreProtocol:
    return Store(":memory:")


#: ``{name: factory(tmp_path) -> a new, empty store}``
ENGINES: dict[str, Callable[[Path], StoreProtocol]] = {
    "sqlite-file": _sqlite_file,
    "sqlite-memory": _sqlite_memory,
}


@pytest.fixture(params=sorted(ENGINES))
def engine(request, tmp_path) -> Iterator[StoreProtocol]:
    """A new, empty store of each engine."""
    store = ENGINES[request.param](tmp_path)
    yield store
    store.close()


@pytest.fixture
def tiny(engine) -> StoreProtocol:
    """Each engine holding the tiny export (24 utterances)."""
    from hl_debug.steps.ingest import ingest

    ingest(engine, TINY_EXPORT)
    return engine


@pytest.fixture
def synthetic(engine) -> StoreProtocol:
    """Each engine holding :func:`tests.webapp_fixtures.fill_synthetic` (the tiny export plus
    every derived table, predictions and the model report) and two decisions: the planted
    error 1018 relabelled ``bill_question`` -> ``chat_settings``, and a ``skip`` of 1000."""
    from tests.webapp_fixtures import PLANTED_ERROR_ID, fill_synthetic

    fill_synthetic(engine, TINY_EXPORT)
    engine.add_annotation(PLANTED_ERROR_ID, "relabel", "chat_settings", "bill_question")
    engine.add_annotation(1000, "skip", None, "card_issue")
    return engine
