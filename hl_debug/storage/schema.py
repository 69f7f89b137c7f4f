"""Table declarations: the schema of every derived table, as data.

A derived table is replaced wholesale by one step run (the map's points, clusters and
neighbours; each signal's results). Its :class:`Table` names the columns with their
Python types, the primary key, the indexes and the named sort orders callers may ask for
— so no caller ever passes SQL, and a second storage engine builds the same tables from
the same declarations.

The map's tables are declared here; each signal declares its own table in its file under
:mod:`hl_debug.signals` (the storage layer materialises whatever :class:`Table` it is
handed).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

SQL_TYPES: dict[type, str] = {int: "INTEGER", float: "REAL", str: "TEXT", bytes: "BLOB"}
_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")

#: A sort order: ``((column, descending), ...)``.
SortKeys = tuple[tuple[str, bool], ...]


@dataclass(frozen=True)
class Column:
    """One column: ``name``, its Python ``type`` (int, float, str or bytes) and what it holds."""

    name: str
    type: type = str
    doc: str = ""

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"invalid column name {self.name!r}: use lower_snake_case")
        if self.type not in SQL_TYPES:
            raise ValueError(f"column {self.name!r}: type must be one of int, float, str, bytes")


@dataclass(frozen=True)
class Table:
    """A derived table's declaration.

    Parameters
    ----------
    name:
        The table's name (lower_snake_case).
    columns:
        Its columns, in order.
    pk:
        The primary-key columns.
    orders:
        Named sort orders, ``{name: ((column, descending), ...)}``; the first is the default.
        The primary key is always appended as the final tie-break, so every order is total.
    indexes:
        Extra indexes, each a tuple of column names.
    """

    name: str
    columns: tuple[Column, ...]
    pk: tuple[str, ...] = ("id",)
    orders: Mapping[str, SortKeys] = field(default_factory=dict, hash=False, compare=False)
    indexes: tuple[tuple[str, ...], ...] = ()

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"invalid table name {self.name!r}: use lower_snake_case")
        names = self.column_names
        if len(set(names)) != len(names):
            raise ValueError(f"table {self.name!r} declares a column twice")
        for group in (self.pk, *self.indexes, *([c for c, _ in keys] for keys in self.orders.values())):
            unknown = [c for c in group if c not in names]
            if unknown:
                raise ValueError(f"table {self.name!r}: unknown column(s) {', '.join(unknown)}")

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def sort_keys(self, order: str | None = None) -> SortKeys:
        """The columns of order ``order`` (default: the first declared, else the primary key),
        with the primary key appended as a tie-break. Unknown names raise ValueError listing
        the valid ones."""
        if order is None:
            keys: SortKeys = next(iter(self.orders.values()), ())
        elif order in self.orders:
            keys = self.orders[order]
        else:
            raise ValueError(f"unknown order {order!r} for {self.name}; valid: {', '.join(self.orders) or 'none'}")
        seen = {c for c, _ in keys}
        return keys + tuple((c, False) for c in self.pk if c not in seen)


POINTS = Table(
    "points",
    (
        Column("id", int, "utterance id"),
        Column("x", float, "2-D map coordinate"),
        Column("y", float, "2-D map coordinate"),
        Column("cluster_id", int, "HDBSCAN cluster (-1: noise)"),
        Column("nearest_cluster", int, "the cluster a noise point is closest to"),
        Column("membership", float, "HDBSCAN membership probability"),
        Column("outlier_score", float, "GLOSH outlier score"),
    ),
    orders={"id": (("id", False),)},
    indexes=(("cluster_id",),),
)

NEIGHBORS = Table(
    "neighbors",
    (
        Column("id", int, "utterance id"),
        Column("rank", int, "1 = nearest"),
        Column("neighbor_id", int, "the neighbour's utterance id"),
        Column("similarity", float, "cosine similarity"),
    ),
    pk=("id", "rank"),
    orders={"id": (("id", False), ("rank", False))},
)

CLUSTERS = Table(
    "clusters",
    (
        Column("cluster_id", int),
        Column("size", int),
        Column("n_annotated", int),
        Column("n_unannotated", int),
        Column("majority_intent", str),
        Column("purity", float),
        Column("label_entropy", float),
        Column("unannotated_share", float),
        Column("label_counts", str, "JSON {intent: count}"),
        Column("usage_counts", str, "JSON {split: count}"),
        Column("keywords", str, "JSON list of class-based TF-IDF keywords"),
        Column("impurity_score", float),
        Column("impurity_rank", int),
        Column("unannotated_rank", int),
        Column("x", float, "centroid on the 2-D map"),
        Column("y", float, "centroid on the 2-D map"),
    ),
    pk=("cluster_id",),
    orders={
        "cluster_id": (("cluster_id", False),),
        # pure / well-covered clusters have no rank: NULLs last, then the score behind the rank
        "impurity": (("impurity_rank", False), ("purity", False)),
        "unannotated": (("unannotated_rank", False), ("unannotated_share", True)),
        "size": (("size", True),),
        "purity": (("purity", False),),
    },
)

# -- core tables: their columns, engine-neutral (each engine's DDL must match; a contract
# test checks it). The SQLite DDL, with constraints and indexes, is in storage/connection.py.

UTTERANCES = Table(
    "utterances",
    (
        Column("id", int, "the platform's utterance id"),
        Column("project_id", int),
        Column("text", str),
        Column("intent", str, "the export's label (None: unannotated); never overwritten"),
        Column("usage", str, "the split (None: none)"),
        Column("complete", int),
        Column("score", float),
        Column("text_hash", str, "identity of the text (hl_debug.domain.text_hash)"),
        Column("position", int, "index in the export"),
        Column("raw", str, "the export record, JSON"),
        Column("row_hash", str),
        Column("ingested_at", str),
        Column("updated_at", str),
    ),
)
PREDICTIONS = Table(
    "predictions",
    (
        Column("endpoint", str), Column("text_hash", str), Column("label", str), Column("confidence", float),
        Column("distribution", str, "JSON [[label, confidence], ...], most confident first"),
        Column("entropy", float), Column("margin", float), Column("predicted_at", str),
    ),
    pk=("endpoint", "text_hash"),
)
EMBEDDINGS = Table(
    "embeddings",
    (Column("encoder", str), Column("text_hash", str), Column("dim", int), Column("vector", bytes, "float32")),
    pk=("encoder", "text_hash"),
)
RUNS = Table(
    "runs",
    (
        Column("id", int), Column("step", str), Column("status", str), Column("parameters", str),
        Column("versions", str), Column("inputs_hash", str), Column("counts", str), Column("started_at", str),
        Column("finished_at", str), Column("duration_s", float), Column("error", str),
    ),
)
REPORTS = Table("reports", (Column("name", str), Column("body", str), Column("run_id", int),
                            Column("created_at", str)), pk=("name",))
ANNOTATIONS = Table(
    "annotations",
    (
        Column("id", int), Column("utterance_id", int), Column("action", str), Column("label", str),
        Column("previous_label", str), Column("created_at", str), Column("reviewer", str),
        Column("batch", str),
    ),
)
META = Table("hl_meta", (Column("key", str), Column("value", str)), pk=("key",))

#: The core tables every engine creates on a new database.
CORE_TABLES: tuple[Table, ...] = (META, UTTERANCES, RUNS, PREDICTIONS, EMBEDDINGS, REPORTS, ANNOTATIONS)



@dataclass(frozen=True)
class Evidence:
    """Columns a derived table contributes to the inspector's rows.

    ``columns`` maps each output name (as the inspector and the map payload call it, e.g.
    ``issue_score``) to a column of ``table`` (``score``). The table's first primary-key
    column must be the utterance id. Signals declare their evidence next to their table;
    the storage layer joins whatever evidence it is handed.
    """

    table: Table
    columns: Mapping[str, str] = field(hash=False, compare=False)

    def __post_init__(self) -> None:
        unknown = [c for c in self.columns.values() if c not in self.table.column_names]
        if unknown:
            raise ValueError(f"evidence of {self.table.name}: unknown column(s) {', '.join(unknown)}")
