"""Shared fixtures: a temp database, the tiny hand-written export, the real shared files."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from hl_debug.storage import Store

FIXTURES = Path(__file__).parent / "fixtures"
TINY_EXPORT = FIXTURES / "tiny_export.json"
SHARED_DATA = Path(os.environ.get("HL_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
REAL_EXPORT = SHARED_DATA / "chatbot_intent_classifier_data.json.zip"
RECORDED_PREDICTIONS = SHARED_DATA / "recorded_predictions_project411.json"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def tiny_export_path() -> Path:
    return TINY_EXPORT


@pytest.fixture
def tiny_records() -> list[dict]:
    return json.loads(TINY_EXPORT.read_text(encoding="utf-8"))


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "hl.db"


@pytest.fixture
def store(db_path: Path):
    s = Store(db_path)
    yield s
    s.close()


@pytest.fixture
def tiny_store(store: Store) -> Store:
    from hl_debug.steps.ingest import ingest

    ingest(store, TINY_EXPORT)
    return store


@pytest.fixture
def write_export(tmp_path: Path):
    """Write ``records`` (a Python list, or raw bytes) to a file and return its path."""

    def _write(records, name: str = "export.json") -> Path:
        path = tmp_path / name
        if isinstance(records, bytes):
            path.write_bytes(records)
        else:
            path.write_text(json.dumps(records), encoding="utf-8")
        return path

    return _write


@pytest.fixture
def real_export() -> Path:
    if not REAL_EXPORT.exists():
        pytest.skip(f"shared export not found at {REAL_EXPORT}")
    return REAL_EXPORT


@pytest.fixture
def recorded_predictions() -> Path:
    if not RECORDED_PREDICTIONS.exists():
        pytest.skip(f"recorded predictions not found at {RECORDED_PREDICTIONS}")
    return RECORDED_PREDICTIONS


def sqlite_dump(path: Path) -> str:
    """The database's full content as SQL text, for exact before/after comparisons."""
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        return "\n".join(conn.iterdump())
    finally:
        conn.close()


@pytest.fixture
def dump():
    return sqlite_dump


@pytest.fixture
def copy_file(tmp_path: Path):
    def _copy(src: Path, name: str) -> Path:
        dst = tmp_path / name
        shutil.copy(src, dst)
        return dst

    return _copy
