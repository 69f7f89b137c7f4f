"""Storage: the schema of every table and every query hl-debug makes.

Nothing outside this package imports ``sqlite3`` or ``sqlite_utils`` or writes SQL; callers
ask named questions of a :class:`Store` — the read models :class:`StoreProtocol` lists.
The fragment methods of :mod:`hl_debug.storage.legacy` remain only while callers convert.
"""

from __future__ import annotations

from hl_debug.domain import hash_json, text_hash
from hl_debug.storage.protocol import StoreProtocol
from hl_debug.storage.schema import (
    CLUSTERS,
    CORE_TABLES,
    MAP_TABLES,
    NEIGHBORS,
    POINTS,
    Column,
    Evidence,
    Table,
)
from hl_debug.storage.sqlite import SCHEMA_VERSION, USAGES, Store, now, package_versions

__all__ = ["CLUSTERS", "CORE_TABLES", "MAP_TABLES", "NEIGHBORS",
           "POINTS", "SCHEMA_VERSION", "USAGES", "Column", "Evidence", "Store", "StoreProtocol", "Table",
           "hash_json", "now", "package_versions", "text_hash"]
