"""Utterance reads and writes: the export's rows, by named, validated column sets."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from hl_debug.domain import NO_SPLIT
from hl_debug.errors import MissingStepError, NotFoundError
from hl_debug.storage.runs import now
from hl_debug.storage.schema import UTTERANCES

#: The ``utterances`` table's columns (declared in :mod:`hl_debug.storage.schema`).
UTTERANCE_COLUMNS = UTTERANCES.column_names
#: Named orders of utterance reads.
UTTERANCE_ORDERS = {"id": "id", "position": "position, id"}


def _select(columns: Sequence[str] | None) -> tuple[list[str], str]:
    """Validated column names (a sequence of declared names, or None for every column but
    the raw record) and their SELECT list. A string is refused, not split: callers name
    columns, they never write a SELECT list."""
    if columns is None:
        names = [c for c in UTTERANCE_COLUMNS if c not in ("raw", "row_hash", "ingested_at", "updated_at")]
    elif isinstance(columns, str):
        raise TypeError(f"columns must be a sequence of column names, not the string {columns!r}")
    else:
        names = list(columns)
    unknown = [c for c in names if c not in UTTERANCE_COLUMNS]
    if unknown or not names:
        raise ValueError(f"unknown utterance column(s) {', '.join(unknown) or '(none given)'}; "
                         f"valid: {', '.join(UTTERANCE_COLUMNS)}")
    return names, ", ".join(f"[{c}]" for c in names)


def _order(order: str) -> str:
    if order not in UTTERANCE_ORDERS:
        raise ValueError(f"unknown order {order!r}; valid: {', '.join(UTTERANCE_ORDERS)}")
    return UTTERANCE_ORDERS[order]


class Utterances:
    """Store methods over the ``utterances`` table (the mixin expects ``self.db``,
    ``self.path``, ``self.transaction()`` and ``self._bump()``)."""

    db: Any
    path: str
    _intents_memo: tuple[int, list[str]] | None = None  # (data version, intents); reset on rollback

    if TYPE_CHECKING:  # provided by the composed Store
        def transaction(self) -> Any:
            ...

        def data_version(self, *, reviews: bool = True) -> int:
            ...

        def _bump(self) -> None:
            ...


    def count_utterances(self) -> int:
        return self.db["utterances"].count

    def require_utterances(self) -> None:
        if self.count_utterances() == 0:
            raise MissingStepError(f"the database {self.path} holds no utterances", step="ingest EXPORT")

    def upsert_utterances(self, rows: Sequence[dict]) -> dict[str, int]:
        """Insert new and update changed utterances in one transaction.

        ``rows`` are validated utterance dicts (see :func:`hl_debug.steps.ingest.validate`)
        carrying ``row_hash``. Returns counts ``added``, ``changed``, ``unchanged`` and
        ``not_in_export`` (rows in the database the new export no longer has; kept).
        """
        existing = {r[0]: r[1] for r in self.db.execute("SELECT id, row_hash FROM utterances")}
        stamp = now()
        added, changed, unchanged = [], [], 0
        for row in rows:
            old = existing.get(row["id"])
            if old is None:
                added.append({**row, "ingested_at": stamp, "updated_at": stamp})
            elif old != row["row_hash"]:
                changed.append({**row, "updated_at": stamp})
            else:
                unchanged += 1
        seen = {r["id"] for r in rows}
        not_in_export = sum(1 for i in existing if i not in seen)
        positions = [(row["position"], row["id"]) for row in rows]
        with self.transaction():
            if added:
                self.db["utterances"].insert_all(added, batch_size=1000)
            for row in changed:
                self.db["utterances"].update(row["id"], row)
            self.db.conn.executemany("UPDATE utterances SET position = ? WHERE id = ?", positions)
            self._bump()
        return {"added": len(added), "changed": len(changed), "unchanged": unchanged, "not_in_export": not_in_export}

    def get_utterances(self, ids: Iterable[int]) -> list[dict]:
        ids = list(ids)
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        return list(self.db.query(f"SELECT * FROM utterances WHERE id IN ({marks}) ORDER BY id", ids))

    def get_utterance(self, utterance_id: int) -> dict:
        rows = self.get_utterances([utterance_id])
        if not rows:
            raise NotFoundError(f"no utterance with id {utterance_id}")
        return rows[0]

    def project_ids(self) -> list[int]:
        return [r[0] for r in self.db.execute("SELECT DISTINCT project_id FROM utterances ORDER BY 1")]

    def intents(self) -> list[str]:
        """The annotated intents, sorted (memoised per data version: every utterance write
        bumps it, and the DISTINCT reads every row — 11 ms at 100k rows, asked by each
        review decision)."""
        version = self.data_version(reviews=False)
        memo = self._intents_memo
        if memo is None or memo[0] != version:
            memo = (version, [r[0] for r in self.db.execute(
                "SELECT DISTINCT intent FROM utterances WHERE intent IS NOT NULL ORDER BY 1")])
            self._intents_memo = memo
        return list(memo[1])

    def texts_by_hash(self) -> dict[str, str]:
        return {h: t for h, t in self.db.execute("SELECT text_hash, text FROM utterances")}

    def utterance_rows(self, columns: Sequence[str] | None = None, *, order: str = "id") -> list[dict]:
        """Every utterance as a dict of ``columns`` (declared names; default: all but the raw
        record), in ``order`` (``id`` or ``position``: the export's order)."""
        _, select = _select(columns)
        return list(self.db.query(f"SELECT {select} FROM utterances ORDER BY {_order(order)}"))

    def utterance_columns(self, columns: Sequence[str], *, order: str = "id") -> dict[str, list]:
        """Whole utterance columns as lists, ``{column: [value per utterance]}``, in ``order``:
        one plain query and no per-row dicts (cheap at 100k rows)."""
        names, select = _select(columns)
        rows = self.db.execute(f"SELECT {select} FROM utterances ORDER BY {_order(order)}").fetchall()
        return dict(zip(names, map(list, zip(*rows)))) if rows else {c: [] for c in names}

    def training_examples(self, columns: Sequence[str] = ("text_hash", "intent")) -> list[dict]:
        """The annotated ``training`` rows (what a local model learns from), by id."""
        _, select = _select(columns)
        return list(self.db.query(
            f"SELECT {select} FROM utterances WHERE usage = 'training' AND intent IS NOT NULL ORDER BY id"))

    def export_records(self) -> list[dict]:
        """``id``, ``raw`` (the original export record, JSON) and ``intent`` of every
        utterance in the export's order."""
        return self.utterance_rows(("id", "raw", "intent"), order="position")

    def text_hashes_by_position(self) -> list[str]:
        """The text hash of every utterance in the export's order (position, then id)."""
        return [r[0] for r in self.db.execute(f"SELECT text_hash FROM utterances ORDER BY {_order('position')}")]

    def utterances_hash(self, columns: Sequence[str] = ("id", "text_hash", "intent", "usage")) -> str:
        """Hash of the named utterance columns in id order: the input identity of downstream steps."""
        _, select = _select(columns)
        h = hashlib.sha1()
        for row in self.db.execute(f"SELECT {select} FROM utterances ORDER BY id"):
            h.update(repr(row).encode())
        return h.hexdigest()

    def stats(self) -> dict[str, Any]:
        """Counts: ``n_utterances``, ``n_annotated``, ``n_unannotated``, by usage, by intent."""
        q = self.db.execute
        n = q("SELECT COUNT(*) FROM utterances").fetchone()[0]
        n_ann = q("SELECT COUNT(*) FROM utterances WHERE intent IS NOT NULL").fetchone()[0]
        by_usage = {(u if u is not None else NO_SPLIT): c for u, c in q(
            "SELECT usage, COUNT(*) FROM utterances GROUP BY usage ORDER BY usage IS NULL, usage")}
        by_intent = {i: c for i, c in q(
            "SELECT intent, COUNT(*) FROM utterances WHERE intent IS NOT NULL GROUP BY intent ORDER BY COUNT(*) DESC, intent")}
        return {
            "n_utterances": n,
            "n_annotated": n_ann,
            "n_unannotated": n - n_ann,
            "by_usage": by_usage,
            "by_intent": by_intent,
        }
