"""Storage owns SQL: nothing outside ``hl_debug/storage/`` (benchmarks and notebooks included) imports
SQLite or writes SQL, no store method takes a SQL fragment (``where=``, ``order_by=``,
``params=``, a comma-joined ``columns=`` string), and nothing calls the fragment methods the
read models replaced."""

from __future__ import annotations

import importlib.util
import inspect
import json
import re
import types
import typing
from pathlib import Path

from hl_debug.storage import Store, StoreProtocol

ROOT = Path(__file__).resolve().parents[2]
SQL = re.compile(r"\b(SELECT|INSERT INTO|DELETE FROM|PRAGMA)\b|UPDATE \w+ SET|\b(where|order_by)=\"|columns=\"[^\"]*,"
                 r"|^\s*import sqlite3|^\s*(import|from) sqlite_utils"
                 r"|\.db\.(execute|query|conn)\b|\.db\[", re.MULTILINE)  # the SQLite engine's own connection
#: Parameters that would carry SQL into the store.
FRAGMENT_PARAMETERS = frozenset({"where", "order_by", "params", "sql"})
#: The removed SQL-fragment methods (hl_debug.storage.legacy) and the names they lived under.
LEGACY_METHODS = ("utterances", "rows", "replace_rows", "web_rows", "web_dicts", "web_dicts_in_order", "web_count",
                  "ranked_ids", "column_lists", "utterances_df", "predictions_df")
LEGACY_NAMES = ("DERIVED_TABLES", "DEFAULT_EVIDENCE", "LegacyQueries", "storage.legacy")
LEGACY_CALL = re.compile(r"\.(" + "|".join(m for m in LEGACY_METHODS if m not in ("utterances", "rows"))
                         + r")\(|\b(store|tiny|web|s|db)\.(utterances|rows)\(|\b(" + "|".join(LEGACY_NAMES) + r")\b")
#: Where the legacy calls may not come back (this file names them, so it is left out).
CALLER_FOLDERS = ("hl_debug", "webapp", "pipelines", "benchmarks", "tests", "notebooks", "docs")


def offenders() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for folder in ("hl_debug", "webapp", "pipelines", "benchmarks"):  # benchmarks use public APIs only
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith("hl_debug/storage/"):
                continue
            hits = [m.group(0) for m in SQL.finditer(path.read_text(encoding="utf-8"))]
            if hits:
                found[rel] = hits
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):  # the notebooks read through the Store too
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        hits = [m.group(0) for m in SQL.finditer(code)]
        if hits:
            found[path.relative_to(ROOT).as_posix()] = hits
    return found


def test_no_sql_outside_storage():
    found = offenders()
    assert not found, f"SQL outside hl_debug/storage (ask the store a named question instead): {found}"


def public_methods(cls: type) -> dict[str, typing.Any]:
    return {name: member for name, member in inspect.getmembers(cls)
            if not name.startswith("_") and (callable(member) or isinstance(member, property))}


def test_no_store_method_takes_a_fragment(engine):
    for cls in (type(engine), StoreProtocol):
        for name, method in public_methods(cls).items():
            if isinstance(method, property):
                continue
            taken = FRAGMENT_PARAMETERS & set(inspect.signature(method).parameters)
            assert not taken, f"{cls.__name__}.{name} takes {', '.join(sorted(taken))}: a SQL fragment"
            hints = typing.get_type_hints(method)
            for parameter in ("columns", "evidence", "ids", "usages"):
                hint = hints.get(parameter)
                union = typing.get_origin(hint) in (typing.Union, types.UnionType)
                alternatives = typing.get_args(hint) if union else (hint,)
                assert str not in alternatives, (
                    f"{cls.__name__}.{name}({parameter}=) accepts a string: name the columns in a sequence")


def test_an_engine_offers_exactly_the_protocol(engine):
    assert sorted(public_methods(type(engine))) == sorted(public_methods(StoreProtocol))


def test_the_legacy_layer_is_gone():
    assert importlib.util.find_spec("hl_debug.storage.legacy") is None
    assert not [m for m in LEGACY_METHODS if hasattr(Store, m)]
    import hl_debug.storage as storage

    assert not [n for n in LEGACY_NAMES if hasattr(storage, n)]


def test_nothing_calls_a_legacy_method():
    found: dict[str, list[str]] = {}
    for folder in CALLER_FOLDERS:
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix not in (".py", ".ipynb", ".md") or path == Path(__file__):
                continue
            hits = [m.group(0) for m in LEGACY_CALL.finditer(path.read_text(encoding="utf-8"))]
            if hits:
                found[path.relative_to(ROOT).as_posix()] = hits
    assert not found, f"calls of the removed SQL-fragment methods (use the named read models): {found}"
