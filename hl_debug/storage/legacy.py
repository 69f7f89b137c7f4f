"""LEGACY: the SQL-fragment query methods, kept only while their callers convert.

Every method here takes SQL (``where=``, ``order_by=``, ``columns=`` strings) or an
undeclared table name; their replacements are the named read models of
:class:`hl_debug.storage.protocol.StoreProtocol`:

=========================================  =====================================================
legacy                                     read model
=========================================  =====================================================
``utterances(columns=, where=, order_by=)`` ``utterance_rows(columns, order=)``,
                                            ``utterance_columns``, ``training_examples``,
                                            ``export_records``, ``text_hashes_by_position``
``rows(table, where=, order_by=)``          ``table_rows(TABLE, order=, equals=, ids=)``
``replace_rows(table, rows, columns=)``     ``replace_table(TABLE, rows)``
``web_rows`` / ``web_dicts`` /              ``inspector_rows(ids, evidence=)``, ``map_columns``,
``web_dicts_in_order`` / ``web_count``      ``cluster_members``, ``minority_rows``,
                                            ``queue_progress``
``ranked_ids(table, order_by=)``            ``ranked_page(TABLE, order=, pending_only=, equals=)``
``column_lists(table, columns)``            ``utterance_columns``, ``prediction_columns``
``predictions_df(endpoint)``                ``prediction_columns(..., align="id")``
``utterances_df()``                         ``utterance_columns(columns)``
``DERIVED_TABLES``                          :class:`~hl_debug.storage.schema.Table` declarations
=========================================  =====================================================

A method goes once ``grep`` over every worktree finds no caller left.

:data:`ISSUES`, :data:`QUEUE` and :data:`DUPLICATES` restate the signals' tables (declared in
:mod:`hl_debug.signals`, which storage may not import) only for :data:`DEFAULT_EVIDENCE`:
the evidence :meth:`~hl_debug.storage.views.WebViews.inspector_rows` and ``map_columns`` join
when a caller passes none. They go once every caller passes
``evidence=hl_debug.signals.registry.evidence()`` (the web app does; ``hl_debug/mapdata.py``
and ``tests/test_points.py`` do not yet).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from hl_debug.errors import MissingStepError
from hl_debug.storage.reviews import LATEST_DECISION_SQL, effective_label_join, effective_label_sql
from hl_debug.storage.schema import Column, Evidence, Table

# Tables whose rows are replaced wholesale by one step run (pk per table).
DERIVED_TABLES: dict[str, tuple[str, ...]] = {
    "points": ("id",),
    "clusters": ("cluster_id",),
    "neighbors": ("id", "rank"),
    "issues": ("id",),
    "queue": ("id",),
    "duplicates": ("group_id", "id"),
}

ISSUES = Table(
    "issues",
    (
        Column("id", int), Column("rank", int), Column("score", float), Column("given_label", str),
        Column("suggested_label", str), Column("flagged", int), Column("reason", str),
    ),
    orders={"score": (("score", True),), "rank": (("rank", False),)},
)
QUEUE = Table(
    "queue",
    (Column("id", int), Column("rank", int), Column("score", float), Column("predicted_label", str),
     Column("reason", str)),
    orders={"rank": (("rank", False),)},
)
DUPLICATES = Table(
    "duplicates",
    (Column("group_id", int), Column("id", int), Column("kind", str), Column("similarity", float),
     Column("intent", str), Column("usage", str)),
    pk=("group_id", "id"),
    orders={"group": (("group_id", False), ("id", False))},
)

#: The inspector's evidence columns as the web app has shown them so far.
DEFAULT_EVIDENCE: tuple[Evidence, ...] = (
    Evidence(ISSUES, {"issue_score": "score", "suggested_label": "suggested_label", "flagged": "flagged",
                      "issue_reason": "reason", "issue_rank": "rank"}),
    Evidence(QUEUE, {"queue_rank": "rank", "queue_reason": "reason"}),
)


class LegacyQueries:
    """LEGACY fragment methods (see the module docstring); mixed into the SQLite Store."""

    db: Any

    if TYPE_CHECKING:  # provided by the composed Store
        def transaction(self) -> Any:
            ...

        def table_columns(self, table: str) -> list[str]:
            ...

        def table_exists(self, table: str) -> bool:
            ...

        def active_endpoint(self) -> str | None:
            ...

        def _bump(self) -> None:
            ...

    def utterances(self, *, columns: str = "*", where: str | None = None, params: Sequence = (),
                   order_by: str = "id") -> list[dict]:
        sql = f"SELECT {columns} FROM utterances" + (f" WHERE {where}" if where else "") + f" ORDER BY {order_by}"
        return list(self.db.query(sql, list(params)))


    def replace_rows(self, table: str, rows: Iterable[dict], *, columns: dict[str, type] | None = None) -> int:
        """Replace every row of derived ``table`` with ``rows`` in one transaction.

        ``table`` must be one of :data:`DERIVED_TABLES`; its primary key comes from there.
        ``columns`` optionally fixes column types (so an empty result still makes a table).
        """
        if table not in DERIVED_TABLES:
            raise ValueError(f"unknown derived table {table!r}; valid: {', '.join(DERIVED_TABLES)}")
        rows = list(rows)
        pk = DERIVED_TABLES[table]
        with self.transaction():
            self.db[table].drop(ignore=True)
            if columns:
                self.db[table].create(columns, pk=pk if len(pk) > 1 else pk[0])
            if rows:
                self.db[table].insert_all(rows, pk=pk if len(pk) > 1 else pk[0], batch_size=2000, alter=True)
            self._bump()
        return len(rows)

    def rows(self, table: str, *, where: str | None = None, params: Sequence = (), order_by: str | None = None,
             limit: int | None = None, offset: int | None = None) -> list[dict]:
        """Rows of a derived table (empty list when the step has not run)."""
        if table not in DERIVED_TABLES:
            raise ValueError(f"unknown derived table {table!r}; valid: {', '.join(DERIVED_TABLES)}")
        if not self.db[table].exists():
            return []
        sql = f"SELECT * FROM [{table}]" + (f" WHERE {where}" if where else "")
        if order_by:
            sql += f" ORDER BY {order_by}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}" + (f" OFFSET {int(offset)}" if offset else "")
        return list(self.db.query(sql, list(params)))


    def web_rows(self, ids: Sequence[int] | None = None, *, endpoint: str | None = None,
                 where: str | None = None, params: Sequence = (), order_by: str = "u.id",
                 limit: int | None = None, offset: int = 0,
                 columns: Sequence[str] | None = None) -> tuple[list[str], list[tuple]]:
        """Every utterance (or ``ids``) joined with whatever later steps have written.

        Returns ``(columns, rows)``: id, text, intent (original), label (effective), usage,
        complete, x, y, cluster_id, outlier_score, predicted_label, confidence, entropy,
        margin, issue_score, suggested_label, flagged, issue_reason, issue_rank, queue_rank,
        queue_reason, decision. Columns of tables that do not exist yet are NULL, so the web
        app works after any prefix of the pipeline. ``limit``/``offset`` page in SQL
        (``limit=0`` returns the count; see :meth:`web_count`). ``where`` is extra SQL over those
        aliases (``u`` utterances, ``p`` points, ``pr`` predictions, ``i`` issues, ``q``
        queue) with ``?`` parameters. ``columns`` keeps only those output columns (the map's
        payload needs 13 of the 22; fewer to materialise at 100k rows).
        """
        endpoint = endpoint or self.active_endpoint()
        joins, select = [], ["u.id", "u.text", "u.intent", f"{effective_label_sql()} AS label",
                             "u.usage", "u.complete"]
        args: list = []
        joins.append(effective_label_join())
        joins.append(f"LEFT JOIN ({LATEST_DECISION_SQL}) d ON d.utterance_id = u.id")

        def optional(table: str, alias: str, on: str, cols: dict[str, str]) -> None:
            have = set(self.table_columns(table))
            if have:
                joins.append(f"LEFT JOIN [{table}] {alias} ON {on}")
            for name, col in cols.items():
                select.append(f"{alias}.[{col}] AS {name}" if col in have else f"NULL AS {name}")

        optional("points", "p", "p.id = u.id",
                 {"x": "x", "y": "y", "cluster_id": "cluster_id", "outlier_score": "outlier_score"})
        if endpoint is not None:
            joins.append("LEFT JOIN predictions pr ON pr.text_hash = u.text_hash AND pr.endpoint = ?")
            args.append(endpoint)
            select += ["pr.label AS predicted_label", "pr.confidence", "pr.entropy", "pr.margin"]
        else:
            select += ["NULL AS predicted_label", "NULL AS confidence", "NULL AS entropy", "NULL AS margin"]
        optional("issues", "i", "i.id = u.id",
                 {"issue_score": "score", "suggested_label": "suggested_label", "flagged": "flagged",
                  "issue_reason": "reason", "issue_rank": "rank"})
        optional("queue", "q", "q.id = u.id", {"queue_rank": "rank", "queue_reason": "reason"})
        select.append("d.action AS decision")
        if columns is not None:
            by_name = {s.split(" AS ")[-1].split(".")[-1]: s for s in select}
            unknown = [c for c in columns if c not in by_name]
            if unknown:
                raise ValueError(f"unknown column(s) {', '.join(unknown)}; valid: {', '.join(by_name)}")
            select = [by_name[c] for c in columns]
        conds: list[str] = []
        if ids is not None:
            ids = [int(i) for i in ids]
            if not ids:
                return [], []
            conds.append(f"u.id IN ({','.join('?' * len(ids))})")
            args += ids
        if where:
            conds.append(f"({where})")
            args += list(params)
        sql = f"SELECT {', '.join(select)} FROM utterances u {' '.join(joins)}"
        if conds:
            sql += " WHERE " + " AND ".join(conds)
        if limit == 0:  # a count: same joins and filters, no rows
            return ["n"], self.db.execute(f"SELECT COUNT(*) FROM ({sql})", args).fetchall()
        sql += f" ORDER BY {order_by}"
        if limit is not None:
            sql += f" LIMIT {int(limit)} OFFSET {int(offset)}"
        cur = self.db.execute(sql, args)
        return [c[0] for c in cur.description], cur.fetchall()


    def web_count(self, **kwargs: Any) -> int:
        """How many rows :meth:`web_rows` would return with the same filters."""
        return int(self.web_rows(limit=0, **kwargs)[1][0][0])

    def ranked_ids(self, table: str, *, order_by: str, pending_only: bool = False, flagged_only: bool = False,
                   limit: int = 50, offset: int = 0) -> tuple[list[int], int]:
        """One page of ids of derived ``table`` (issues, queue) in ``order_by`` order, and the total.

        ``pending_only`` leaves out utterances that already have a decision; ``flagged_only``
        keeps rows whose ``flagged`` column is 1. Paging runs on the small table alone, so a
        page costs the same at 100k rows as at 2k.
        """
        if table not in DERIVED_TABLES:
            raise ValueError(f"unknown derived table {table!r}; valid: {', '.join(DERIVED_TABLES)}")
        if not self.table_exists(table):
            return [], 0
        conds = ["id NOT IN (SELECT utterance_id FROM annotations)"] if pending_only else []
        if flagged_only and "flagged" in self.table_columns(table):
            conds.append("flagged = 1")
        where = (" WHERE " + " AND ".join(conds)) if conds else ""
        total = self.db.execute(f"SELECT COUNT(*) FROM [{table}]{where}").fetchone()[0]
        ids = [r[0] for r in self.db.execute(
            f"SELECT id FROM [{table}]{where} ORDER BY {order_by} LIMIT ? OFFSET ?", [int(limit), int(offset)])]
        return ids, int(total)

    def web_dicts_in_order(self, ids: Sequence[int], **kwargs: Any) -> list[dict]:
        """:meth:`web_dicts` for ``ids``, returned in the order of ``ids``."""
        by_id = {r["id"]: r for r in self.web_dicts(ids, **kwargs)}
        return [by_id[i] for i in ids if i in by_id]

    def web_dicts(self, ids: Sequence[int] | None = None, **kwargs: Any) -> list[dict]:
        """:meth:`web_rows` as a list of dicts."""
        cols, rows = self.web_rows(ids, **kwargs)
        return [dict(zip(cols, r)) for r in rows]

    def column_lists(self, table: str, columns: Sequence[str], *, endpoint: str | None = None) -> dict[str, list]:
        """Whole columns of one table as lists, in primary-key order: ``{column: [value per row]}``.

        One plain query and no per-row dicts (the web app's model report reads utterances and
        predictions this way and aligns them by text hash: at 100k rows cheaper than
        :meth:`predictions_df`, which also reads every stored distribution). ``table`` is
        ``utterances``, ``predictions`` (the rows of ``endpoint``, default the active one) or
        a derived table; columns it lacks come back as None lists (step not run yet).
        """
        if table not in ("utterances", "predictions", *DERIVED_TABLES):
            raise ValueError(f"unknown table {table!r}; valid: utterances, predictions, {', '.join(DERIVED_TABLES)}")
        have = set(self.table_columns(table))
        present = [c for c in columns if c in have]
        rows: list = []
        if present:
            select = ", ".join(f"[{c}]" for c in present)
            if table == "predictions":
                rows = self.db.execute(f"SELECT {select} FROM predictions WHERE endpoint = ? ORDER BY text_hash",
                                       [endpoint or self.active_endpoint()]).fetchall()
            else:
                order = ", ".join(DERIVED_TABLES.get(table, ("id",)))
                rows = self.db.execute(f"SELECT {select} FROM [{table}] ORDER BY {order}").fetchall()
        found = dict(zip(present, map(list, zip(*rows)))) if rows else {c: [] for c in present}
        return {c: found.get(c, [None] * len(rows)) for c in columns}

    def utterances_df(self):
        """All utterances as a pandas DataFrame (without the raw record), ordered by id."""
        import pandas as pd

        return pd.read_sql_query(
            "SELECT id, project_id, text, intent, usage, complete, score, text_hash, position FROM utterances ORDER BY id",
            self.db.conn,
        )

    def predictions_df(self, endpoint: str | None = None):
        """One row per utterance joined with ``endpoint``'s cached prediction (NULLs where
        none). Columns: id, text, intent, usage, label, confidence, distribution, entropy,
        margin, endpoint, predicted_at. ``endpoint`` defaults to the active one."""
        import pandas as pd

        endpoint = endpoint or self.active_endpoint()
        if endpoint is None:
            raise MissingStepError("no predictions in the database yet", step="predict")
        return pd.read_sql_query(
            "SELECT u.id, u.text, u.intent, u.usage, p.label, p.confidence, p.distribution, p.entropy, "
            "p.margin, p.endpoint, p.predicted_at FROM utterances u "
            "LEFT JOIN predictions p ON p.text_hash = u.text_hash AND p.endpoint = ? ORDER BY u.id",
            self.db.conn,
            params=[endpoint],
        )
