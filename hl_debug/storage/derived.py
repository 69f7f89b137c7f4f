"""Derived tables: written wholesale from a :class:`~hl_debug.storage.schema.Table`
declaration, read back in one of its named orders.

Mixed into :class:`hl_debug.storage.Store`; callers never pass SQL, only the declaration,
an order name and equality filters on declared columns.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from hl_debug.storage.schema import CORE_TABLES, SQL_TYPES, Table

#: Tables a step may never replace wholesale (the export, runs, caches, reviews).
CORE_NAMES = frozenset(t.name for t in CORE_TABLES)


def _order_sql(table: Table, order: str | None, have: Iterable[str] | None = None) -> str:
    """ORDER BY of ``order``; keys ``have`` (the stored columns) lacks are left out (a table
    written before a column was declared sorts as if it were NULL everywhere)."""
    keys = table.sort_keys(order)
    if have is not None:
        have = set(have)
        keys = tuple((c, d) for c, d in keys if c in have) or tuple((c, False) for c in table.pk if c in have)
    # NULLs last whatever the direction: an unranked row never comes before a ranked one
    return ", ".join(f"[{c}] IS NULL, [{c}]{' DESC' if desc else ''}" for c, desc in keys)


def _where_sql(table: Table, equals: Mapping[str, Any] | None) -> tuple[list[str], list[Any]]:
    conds, args = [], []
    for column, value in (equals or {}).items():
        if column not in table.column_names:
            raise ValueError(f"unknown column {column!r} of {table.name}; valid: {', '.join(table.column_names)}")
        if value is None:
            conds.append(f"[{column}] IS NULL")
        else:
            conds.append(f"[{column}] = ?")
            args.append(value)
    return conds, args


def plain_values(values: Sequence[Any] | np.ndarray) -> list[Any]:
    """Python values for SQLite (numpy scalars are not bound; NaN floats become NULL)."""
    if isinstance(values, np.ndarray):
        if values.dtype.kind == "f":
            return [None if v != v else v for v in values.tolist()]
        return values.tolist()
    return list(values)


class DerivedTables:
    """Store methods for tables declared by a :class:`Table` (the mixin expects ``self.db``,
    a :class:`sqlite_utils.Database`, and ``self.transaction()``)."""

    db: Any

    if TYPE_CHECKING:  # provided by the composed Store
        def transaction(self) -> Any:
            ...

        def table_exists(self, table: str) -> bool:
            ...

        def table_columns(self, table: str) -> list[str]:
            ...

        def _bump(self) -> None:
            ...

    def replace_table(self, table: Table, rows: Iterable[Mapping[str, Any]]) -> int:
        """Replace every row of ``table`` with ``rows`` in one transaction; returns the count.

        The table is (re)created from its declaration, so an empty result still leaves an
        empty table with the declared columns. A row key that is not a declared column
        raises ValueError naming it (nothing is written); a missing key is NULL. A core
        table (utterances, runs, annotations, ...) is refused: only derived tables are
        replaced wholesale.
        """
        if table.name in CORE_NAMES:
            raise ValueError(f"{table.name} is a core table, not a derived one: it is never replaced wholesale")
        names = table.column_names
        rows = list(rows)
        for row in rows:
            extra = [k for k in row if k not in names]
            if extra:
                raise ValueError(f"{table.name}: undeclared column(s) {', '.join(sorted(extra))}; "
                                 f"declared: {', '.join(names)}")
        with self.transaction():
            self._recreate(table)
            self.db.conn.executemany(self._insert_sql(table, names), ([row.get(c) for c in names] for row in rows))
            self._bump()
        return len(rows)

    def replace_table_columns(self, table: Table, columns: Mapping[str, Sequence[Any] | np.ndarray], *,
                              chunk: int = 100_000) -> int:
        """:meth:`replace_table` from whole columns (``{name: values}``, equal lengths; a
        declared column left out is NULL) — no dict per row, written ``chunk`` rows at a time:
        what a million-row table (the kNN graph: 10 rows per utterance) needs."""
        if table.name in CORE_NAMES:
            raise ValueError(f"{table.name} is a core table, not a derived one: it is never replaced wholesale")
        extra = [k for k in columns if k not in table.column_names]
        if extra:
            raise ValueError(f"{table.name}: undeclared column(s) {', '.join(sorted(extra))}; "
                             f"declared: {', '.join(table.column_names)}")
        lengths = {len(v) for v in columns.values()}
        if len(lengths) > 1:
            raise ValueError(f"{table.name}: columns of different lengths {sorted(lengths)}")
        n = lengths.pop() if lengths else 0
        names = list(columns)
        with self.transaction():
            self._recreate(table)
            sql = self._insert_sql(table, names)
            for start in range(0, n, chunk):
                parts = [plain_values(columns[c][start:start + chunk]) for c in names]
                self.db.conn.executemany(sql, zip(*parts))
            self._bump()
        return n

    def _recreate(self, table: Table) -> None:
        cols = ", ".join(f"[{c.name}] {SQL_TYPES[c.type]}" for c in table.columns)
        pk = ", ".join(f"[{c}]" for c in table.pk)
        self.db.execute(f"DROP TABLE IF EXISTS [{table.name}]")
        self.db.execute(f"CREATE TABLE [{table.name}] ({cols}, PRIMARY KEY ({pk}))")
        for i, index in enumerate(table.indexes):
            self.db.execute(f"CREATE INDEX [idx_{table.name}_{i}] ON [{table.name}] "
                            f"({', '.join(f'[{c}]' for c in index)})")

    @staticmethod
    def _insert_sql(table: Table, names: Sequence[str]) -> str:
        return (f"INSERT INTO [{table.name}] ({', '.join(f'[{c}]' for c in names)}) "
                f"VALUES ({', '.join('?' * len(names))})")

    def table_arrays(self, table: Table, columns: Sequence[str], *, order: str | None = None,
                     chunk: int = 100_000) -> dict[str, np.ndarray]:
        """Whole columns of ``table`` as numpy arrays (``{name: array}``, in its named ``order``
        as :meth:`table_rows`; empty before its step ran), read ``chunk`` rows at a time — the
        columnar read of :meth:`replace_table_columns`."""
        unknown = [c for c in columns if c not in table.column_names]
        if unknown:
            raise ValueError(f"{table.name}: unknown column(s) {', '.join(unknown)}")
        if not self.table_exists(table.name):
            return {c: np.array([]) for c in columns}
        sql = f"SELECT {', '.join(f'[{c}]' for c in columns)} FROM [{table.name}]"
        sql += " ORDER BY " + ", ".join(f"[{c}]{' DESC' if desc else ''}" for c, desc in table.sort_keys(order))
        cursor = self.db.conn.execute(sql)
        parts: list[list[np.ndarray]] = [[] for _ in columns]
        while rows := cursor.fetchmany(chunk):
            for k, values in enumerate(zip(*rows)):
                parts[k].append(np.asarray(values))
        return {c: np.concatenate(p) if p else np.array([]) for c, p in zip(columns, parts)}

    def table_rows(self, table: Table, *, order: str | None = None, equals: Mapping[str, Any] | None = None,
                   ids: Sequence[int] | None = None, limit: int | None = None, offset: int = 0) -> list[dict]:
        """Rows of ``table`` in its named ``order`` (empty when the step has not run).

        ``equals`` keeps rows whose columns equal the given values; ``ids`` keeps rows whose
        first primary-key column is one of them.
        """
        if not self.table_exists(table.name):
            return []
        conds, args = _where_sql(table, equals)
        if ids is not None:
            ids = [int(i) for i in ids]
            if not ids:
                return []
            conds.append(f"[{table.pk[0]}] IN ({','.join('?' * len(ids))})")
            args += ids
        sql = f"SELECT * FROM [{table.name}]" + (" WHERE " + " AND ".join(conds) if conds else "")
        sql += f" ORDER BY {_order_sql(table, order, self.table_columns(table.name))}"
        if limit is not None:
            sql += " LIMIT ? OFFSET ?"
            args += [int(limit), int(offset)]
        return list(self.db.query(sql, args))

    def table_count(self, table: Table, *, equals: Mapping[str, Any] | None = None) -> int:
        """How many rows ``table`` holds (0 when the step has not run)."""
        if not self.table_exists(table.name):
            return 0
        conds, args = _where_sql(table, equals)
        sql = f"SELECT COUNT(*) FROM [{table.name}]" + (" WHERE " + " AND ".join(conds) if conds else "")
        return int(self.db.execute(sql, args).fetchone()[0])

    def ranked_page(self, table: Table, *, order: str | None = None, pending_only: bool = False,
                    equals: Mapping[str, Any] | None = None, limit: int = 50,
                    offset: int = 0) -> tuple[list[int], int]:
        """One page of utterance ids of ``table`` in ``order``, and the total the filters keep.

        ``pending_only`` leaves out utterances that already have a review decision. Paging
        runs on the table alone, so a page costs the same at 100k rows as at 2k.
        """
        if not self.table_exists(table.name):
            return [], 0
        conds, args = _where_sql(table, equals)
        key = table.pk[0]
        if pending_only:
            conds.append(f"[{key}] NOT IN (SELECT utterance_id FROM annotations)")
        where = (" WHERE " + " AND ".join(conds)) if conds else ""
        total = self.db.execute(f"SELECT COUNT(*) FROM [{table.name}]{where}", args).fetchone()[0]
        order_by = _order_sql(table, order, self.table_columns(table.name))
        page = [r[0] for r in self.db.execute(
            f"SELECT [{key}] FROM [{table.name}]{where} ORDER BY {order_by} LIMIT ? OFFSET ?",
            [*args, int(limit), int(offset)])]
        return page, int(total)
