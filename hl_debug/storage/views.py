"""The web app's read models: inspector rows, the map's columns, cluster members, minority-label
rows, queue progress, search, neighbours and confusion cells.

Each is one named question with typed arguments (flaskr's ``get_post(id)`` in shape): the
caller never sees a join alias or writes SQL. The inspector's evidence columns come from
:class:`~hl_debug.storage.schema.Evidence` declarations (the signals' tables and the columns
each contributes), so a new signal shows up in the inspector without an edit here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from hl_debug.storage.reviews import LATEST_DECISION_SQL, effective_label_join, effective_label_sql
from hl_debug.storage.schema import CLUSTERS, POINTS, Evidence, Table

#: The inspector's own columns, in output order, around the evidence columns.
UTTERANCE_FIELDS = ("id", "text", "intent", "label", "usage", "complete")
POINT_FIELDS = {"x": "x", "y": "y", "cluster_id": "cluster_id", "outlier_score": "outlier_score"}
PREDICTION_FIELDS = {"predicted_label": "label", "confidence": "confidence", "entropy": "entropy", "margin": "margin"}


#: ``str.translate`` table lowering ASCII letters only (SQLite's LIKE folds no other case).
_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}

class WebViews:
    """Store methods the web app reads through (the mixin expects ``self.db``,
    ``self.table_columns()`` and ``self.active_endpoint()``)."""

    db: Any

    if TYPE_CHECKING:  # provided by the composed Store
        def table_columns(self, table: str) -> list[str]:
            ...

        def table_exists(self, table: str) -> bool:
            ...

        def active_endpoint(self) -> str | None:
            ...

    # -- the joined inspector row ------------------------------------------------------

    def inspector_columns(self, evidence: Sequence[Evidence] | None = None) -> tuple[str, ...]:
        """The output columns of :meth:`inspector_rows` for ``evidence`` (default: none;
        callers pass the signal registry's), in order."""
        ev = () if evidence is None else tuple(evidence)
        return (*UTTERANCE_FIELDS, *POINT_FIELDS, *PREDICTION_FIELDS,
                *(name for e in ev for name in e.columns), "decision")

    def _inspector_query(self, columns: Sequence[str] | None, evidence: Sequence[Evidence] | None,
                         endpoint: str | None, where: list[str], args: list[Any]) -> tuple[list[str], str, list]:
        """``(names, sql, args)`` of the joined read; joins only what ``columns`` need (each
        join is on a unique key, so leaving one out never changes the rows)."""
        ev = () if evidence is None else tuple(evidence)
        valid = self.inspector_columns(ev)
        names = list(valid if columns is None else columns)
        unknown = [c for c in names if c not in valid]
        if unknown:
            raise ValueError(f"unknown column(s) {', '.join(unknown)}; valid: {', '.join(valid)}")
        wanted = set(names)
        expr: dict[str, str] = {c: f"u.[{c}]" for c in UTTERANCE_FIELDS if c != "label"}
        joins: list[str] = []
        join_args: list[Any] = []
        if "label" in wanted:
            expr["label"] = effective_label_sql()
            joins.append(effective_label_join())
        if "decision" in wanted:
            expr["decision"] = "d.action"
            joins.append(f"LEFT JOIN ({LATEST_DECISION_SQL}) d ON d.utterance_id = u.id")
        if wanted & set(POINT_FIELDS):
            have = set(self.table_columns(POINTS.name))
            if have:
                joins.append(f"LEFT JOIN [{POINTS.name}] p ON p.id = u.id")
            expr.update({n: f"p.[{c}]" if c in have else "NULL" for n, c in POINT_FIELDS.items()})
        if wanted & set(PREDICTION_FIELDS):
            endpoint = endpoint or self.active_endpoint()
            if endpoint is not None:
                joins.append("LEFT JOIN predictions pr ON pr.text_hash = u.text_hash AND pr.endpoint = ?")
                join_args.append(endpoint)
            expr.update({n: f"pr.[{c}]" if endpoint is not None else "NULL" for n, c in PREDICTION_FIELDS.items()})
        for k, e in enumerate(ev):
            if not wanted & set(e.columns):
                continue
            have = set(self.table_columns(e.table.name))
            if have:
                joins.append(f"LEFT JOIN [{e.table.name}] e{k} ON e{k}.[{e.table.pk[0]}] = u.id")
            expr.update({n: f"e{k}.[{c}]" if c in have else "NULL" for n, c in e.columns.items()})
        select = ", ".join(f"{expr[c]} AS [{c}]" for c in names)
        sql = f"SELECT {select} FROM utterances u {' '.join(joins)}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return names, sql, join_args + args

    def inspector_rows(self, ids: Sequence[int], *, evidence: Sequence[Evidence] | None = None,
                       endpoint: str | None = None, columns: Sequence[str] | None = None) -> list[dict]:
        """Full rows for ``ids``, in the order of ``ids`` (unknown ids left out).

        Each row: id, text, intent (original), label (effective), usage, complete, x, y,
        cluster_id, outlier_score, predicted_label, confidence, entropy, margin (of
        ``endpoint``, default the active one), one column per output name of ``evidence``
        (default: none; callers pass the
        signal registry's :func:`~hl_debug.signals.registry.evidence`), decision (the latest action). Columns of
        steps not run yet are NULL, so the inspector works after any prefix of the pipeline.
        """
        ids = [int(i) for i in ids]
        if not ids:
            return []
        by_id: dict[int, dict] = {}
        for start in range(0, len(ids), 900):  # stay under SQLite's bound-parameter limit
            chunk = sorted(set(ids[start:start + 900]))
            names, sql, args = self._inspector_query(
                columns if columns is None or "id" in columns else ["id", *columns], evidence, endpoint,
                [f"u.id IN ({','.join('?' * len(chunk))})"], chunk)
            for row in self.db.execute(sql, args):
                d = dict(zip(names, row))
                by_id[d["id"]] = d
        if columns is not None and "id" not in columns:
            return [{c: by_id[i][c] for c in columns} for i in ids if i in by_id]
        return [by_id[i] for i in ids if i in by_id]

    def map_columns(self, columns: Sequence[str], *, evidence: Sequence[Evidence] | None = None,
                    endpoint: str | None = None) -> dict[str, list]:
        """Whole inspector columns (see :meth:`inspector_rows`) for every utterance, in id
        order: ``{column: [value per utterance]}`` — the map payload's read, one join and no
        per-row dicts."""
        names, sql, args = self._inspector_query(columns, evidence, endpoint, [], [])
        rows = self.db.execute(sql + " ORDER BY u.id", args).fetchall()
        if not rows:
            return {c: [] for c in names}
        return dict(zip(names, map(list, zip(*rows))))

    def cluster(self, cluster_id: int) -> dict | None:
        """One cluster's row (None when there is none, or before analyze)."""
        if not self.table_exists(CLUSTERS.name):
            return None
        row = self.db.execute(f"SELECT * FROM [{CLUSTERS.name}] WHERE cluster_id = ?", [int(cluster_id)])
        names = [c[0] for c in row.description]
        found = row.fetchone()
        return dict(zip(names, found)) if found else None

    def cluster_member_ids(self, cluster_id: int) -> list[int]:
        """Ids of every utterance in cluster ``cluster_id``, ascending (empty before analyze)."""
        if not self.table_exists(POINTS.name):
            return []
        return [r[0] for r in self.db.execute(
            f"SELECT id FROM [{POINTS.name}] WHERE cluster_id = ? ORDER BY id", [int(cluster_id)])]

    def cluster_members(self, cluster_id: int, *, evidence: Sequence[Evidence] | None = None) -> list[dict]:
        """Inspector rows of every utterance in cluster ``cluster_id``, by id (empty before analyze)."""
        return self.inspector_rows(self.cluster_member_ids(cluster_id), evidence=evidence)

    def minority_rows(self, per_cluster: int, *, evidence: Sequence[Evidence] | None = None,
                      score: Evidence | None = None) -> tuple[dict[int, list[dict]], dict[int, int]]:
        """The minority-label rows of every cluster (effective label differs from the
        cluster's majority intent; noise left out), most suspicious first:
        ``({cluster: its first per_cluster inspector rows}, {cluster: how many there are})``.

        ``score`` orders rows within a cluster: its table's column of its first output name,
        highest first, NULLs last (default: ``issue_score`` of ``evidence``); then by id.
        """
        if not (self.table_exists(POINTS.name) and "majority_intent" in self.table_columns(CLUSTERS.name)):
            return {}, {}
        if score is None:  # the label-issue score, when the evidence carries it
            score = next((Evidence(e.table, {"issue_score": e.columns["issue_score"]})
                          for e in evidence or () if "issue_score" in e.columns), None)
        join, order = "", "p.cluster_id, u.id"
        if score is not None:
            col = next(iter(score.columns.values()))
            if col in self.table_columns(score.table.name):
                join = f"LEFT JOIN [{score.table.name}] s ON s.[{score.table.pk[0]}] = u.id"
                order = f"p.cluster_id, s.[{col}] IS NULL, s.[{col}] DESC, u.id"
        sql = (f"SELECT u.id, p.cluster_id FROM utterances u JOIN [{POINTS.name}] p ON p.id = u.id "
               f"{effective_label_join()} {join} WHERE p.cluster_id >= 0 AND {effective_label_sql()} != "
               f"(SELECT c.majority_intent FROM [{CLUSTERS.name}] c WHERE c.cluster_id = p.cluster_id) "
               f"ORDER BY {order}")
        counts: dict[int, int] = {}
        shown: list[int] = []
        for uid, cluster in self.db.execute(sql):
            counts[cluster] = counts.get(cluster, 0) + 1
            if counts[cluster] <= per_cluster:
                shown.append(uid)
        minority: dict[int, list[dict]] = {}
        for r in self.inspector_rows(shown, evidence=evidence):
            minority.setdefault(r["cluster_id"], []).append(r)
        return minority, counts

    def queue_progress(self, table: Table | str | None = None) -> dict[str, int]:
        """Review progress over the annotation queue ``table`` (a Table or its name; default
        ``queue``): ``total`` rows, ``pending`` (no decision yet), ``done`` (decided) and
        ``labelled`` (effective label set). All 0 before the step has run."""
        name = "queue" if table is None else table if isinstance(table, str) else table.name
        if not self.table_exists(name):
            return {"total": 0, "pending": 0, "done": 0, "labelled": 0}
        total = self.db.execute(f"SELECT COUNT(*) FROM [{name}]").fetchone()[0]
        pending = self.db.execute(
            f"SELECT COUNT(*) FROM [{name}] WHERE id NOT IN (SELECT utterance_id FROM annotations)").fetchone()[0]
        labelled = self.db.execute(
            f"SELECT COUNT(*) FROM [{name}] q JOIN utterances u ON u.id = q.id {effective_label_join()} "
            f"WHERE {effective_label_sql()} IS NOT NULL").fetchone()[0]
        return {"total": int(total), "pending": int(pending), "done": int(total - pending), "labelled": int(labelled)}

    # -- small named questions ---------------------------------------------------------

    def search_ids(self, query: str, *, limit: int = 500) -> list[int]:
        """Ids of utterances whose text contains ``query`` (case-insensitive, literal), by id."""
        def like(q: str) -> str:
            return "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"

        if "\x00" not in query:
            return [r[0] for r in self.db.execute(
                "SELECT id FROM utterances WHERE text LIKE ? ESCAPE '\\' ORDER BY id LIMIT ?", [like(query), int(limit)])]
        # SQLite's LIKE reads its pattern up to the first NUL ("a\x00b" would match every text
        # holding "a"): select the rows holding the query's first part, then match the whole
        # query here, case-insensitive for ASCII letters as LIKE is.
        wanted = query.translate(_ASCII_LOWER)
        rows = self.db.execute("SELECT id, text FROM utterances WHERE text LIKE ? ESCAPE '\\' ORDER BY id",
                               [like(query.split("\x00", 1)[0])])
        return [i for i, text in rows if wanted in str(text).translate(_ASCII_LOWER)][:int(limit)]

    def neighbors_of(self, utterance_id: int) -> list[dict]:
        """The stored nearest neighbours of one utterance with their effective labels, by rank."""
        if not self.table_exists("neighbors"):
            return []
        return list(self.db.query(
            "SELECT n.rank, n.neighbor_id AS id, n.similarity, u.text, u.usage, u.intent, "
            f"{effective_label_sql()} AS label FROM neighbors n JOIN utterances u ON u.id = n.neighbor_id "
            f"{effective_label_join()} WHERE n.id = ? ORDER BY n.rank", [int(utterance_id)]))

    def confusion_cell_ids(self, given: str, predicted: str, *, usages: Sequence[str] | None = None,
                           endpoint: str | None = None) -> list[int]:
        """Ids (ascending) of rows labelled ``given`` (original intent) that ``endpoint``
        (default: the active one) predicted as ``predicted``, restricted to ``usages``
        (None: every row) — one cell of a confusion matrix."""
        endpoint = endpoint or self.active_endpoint()
        if endpoint is None or not given or not predicted:
            return []
        sql = ("SELECT u.id FROM utterances u JOIN predictions p ON p.text_hash = u.text_hash AND p.endpoint = ? "
               "WHERE u.intent = ? AND p.label = ?")
        args: list[Any] = [endpoint, given, predicted]
        if usages is not None:
            usages = list(usages)
            if not usages:
                return []
            sql += f" AND u.usage IN ({','.join('?' * len(usages))})"
            args += usages
        return [r[0] for r in self.db.execute(sql + " ORDER BY u.id", args)]
