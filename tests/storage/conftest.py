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
