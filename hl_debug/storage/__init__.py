"""Storage: the schema of every table and every query hl-debug makes.

Nothing outside this package imports ``sqlite3`` or ``sqlite_utils`` or writes SQL; callers
ask named questions of a :class:`Store` — the read models :class:`StoreProtocol` lists.
No store method takes SQL: columns are declared names, orders are names declared on a
:class:`Table`, filters are equality on declared columns.
"""

from __future__ import annotations

from hl_debug.domain import hash_json, text_hash
from hl_debug.storage.protocol import StoreProtocol
from hl_debug.storage.schema import (
    CLUSTERS,
    CORE_TABLES,
    NEIGHBORS,
    POINTS,
    Column,
    Evidence,
    Table,
)
from hl_debug.storage.sqlite import SCHEMA_VERSION, Store, now, package_versions

__all__ = ["CLUSTERS", "CORE_TABLES", "NEIGHBORS",
           "POINTS", "SCHEMA_VERSION", "Column", "Evidence", "Store", "StoreProtocol", "Table",
           "hash_json", "now", "package_versions", "text_hash"]
