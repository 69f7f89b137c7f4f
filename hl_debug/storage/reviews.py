"""Review decisions: the append-only ``annotations`` table and the ONE definition of the
effective label.

The *effective* label of an utterance is the label of its latest labelling decision
(``relabel``, ``accept``, ``keep`` or ``out_of_scope``), else its original intent; ``skip`` is recorded (so
review progress is visible) but never changes it. Every read that shows or exports a
label builds on :data:`LATEST_LABEL_SQL` / :func:`effective_label_sql` here — nothing else
restates the rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from hl_debug.domain import LABELLING_ACTIONS
from hl_debug.errors import NotFoundError
from hl_debug.storage.connection import REVIEW_VERSION_KEY

_ACTIONS_SQL = ", ".join(f"'{a}'" for a in LABELLING_ACTIONS)
#: Decisions that are not part of a taxonomy batch (a merge, rename, or its revert).
_NOT_TAXONOMY_SQL = ("(batch IS NULL OR NOT (batch LIKE 'merge:%' OR batch LIKE 'rename:%' "
                     "OR batch LIKE 'revert:%'))")

#: ``(utterance_id, label, action)`` of the latest labelling decision per decided utterance.
LATEST_LABEL_SQL = (
    "SELECT a.utterance_id, a.label, a.action FROM annotations a JOIN ("
    f"SELECT utterance_id, MAX(id) AS mid FROM annotations WHERE action IN ({_ACTIONS_SQL}) "
    "GROUP BY utterance_id) m ON a.id = m.mid"
)

#: ``(utterance_id, action, label, created_at)`` of the latest decision (skip included).
LATEST_DECISION_SQL = (
    "SELECT a.utterance_id, a.action, a.label, a.created_at FROM annotations a JOIN ("
    "SELECT utterance_id, MAX(id) AS mid FROM annotations GROUP BY utterance_id) m ON a.id = m.mid"
)


def effective_label_sql(utterances: str = "u", latest: str = "el") -> str:
    """The effective-label expression over alias ``utterances`` joined (LEFT) with
    :data:`LATEST_LABEL_SQL` as ``latest`` (see :func:`effective_label_join`)."""
    return f"COALESCE({latest}.label, {utterances}.intent)"


def effective_label_join(utterances: str = "u", latest: str = "el") -> str:
    """The LEFT JOIN that :func:`effective_label_sql` needs."""
    return f"LEFT JOIN ({LATEST_LABEL_SQL}) {latest} ON {latest}.utterance_id = {utterances}.id"


class Reviews:
    """Store methods for review decisions (the mixin expects ``self.db``, ``self.transaction()``,
    ``self.get_utterance()`` and ``self._bump()``)."""

    db: Any

    if TYPE_CHECKING:  # provided by the composed Store
        def transaction(self) -> Any:
            ...

        def _bump(self, key: str = ...) -> None:
            ...

        def get_utterance(self, utterance_id: int) -> dict:
            ...

        def intents(self) -> list[str]:
            ...

    def add_annotation(self, utterance_id: int, action: str, label: str | None,
                       previous_label: str | None, *, reviewer: str | None = None,
                       batch: str | None = None) -> dict:
        """Append one review decision (never updates or deletes earlier ones).

        ``reviewer`` names who decided (team mode); ``batch`` ties the decision to a bulk
        change (see :meth:`add_annotations`). Validation of the action and label against the
        project lives in :func:`hl_debug.steps.review.record_decision`; this only writes.
        """
        return self.add_annotations([{"utterance_id": utterance_id, "action": action, "label": label,
                                      "previous_label": previous_label, "reviewer": reviewer,
                                      "batch": batch}])[0]

    def add_annotations(self, rows: Sequence[dict]) -> list[dict]:
        """Append several decisions (``utterance_id``, ``action``, ``label``,
        ``previous_label`` each; optional ``reviewer`` and ``batch``) in ONE transaction: all
        are stored, or none (a group's labelling is one decision for the user). Validation
        lives in :func:`hl_debug.steps.review.record_decisions`."""
        from hl_debug.storage.sqlite import now

        stamp = now()
        out = [{"utterance_id": int(r["utterance_id"]), "action": r["action"], "label": r["label"],
                "previous_label": r["previous_label"], "created_at": stamp,
                "reviewer": r.get("reviewer"), "batch": r.get("batch")} for r in rows]
        with self.transaction():
            for row in out:
                cur = self.db.execute(
                    "INSERT INTO annotations (utterance_id, action, label, previous_label, created_at, "
                    "reviewer, batch) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [row["utterance_id"], row["action"], row["label"], row["previous_label"], stamp,
                     row["reviewer"], row["batch"]])
                row["id"] = cur.lastrowid
            if out:
                self._bump(REVIEW_VERSION_KEY)
        return out

    def created_labels(self) -> list[str]:
        """Labels that decisions introduced and no original intent has (new intents named in
        review, and :data:`~hl_debug.domain.OUT_OF_SCOPE`), sorted."""
        # The few distinct decision labels, less the (memoised) intents: a NOT IN over the
        # utterances would build a set of every row's intent per call (13 ms at 100k rows,
        # inside each decision's write transaction).
        intents = set(self.intents())
        return [r[0] for r in self.db.execute("SELECT DISTINCT label FROM annotations WHERE label IS NOT NULL "
                                              "ORDER BY 1") if r[0] not in intents]

    def review_labels(self) -> list[str]:
        """Every label a decision may use without creating it: the original intents plus
        :meth:`created_labels`, sorted."""
        return sorted({*self.intents(), *self.created_labels()})

    def annotations(self, utterance_id: int | None = None) -> list[dict]:
        """Decisions in the order they were made, with the utterance's text and original intent."""
        sql = ("SELECT a.id, a.utterance_id, u.text, u.intent AS original_label, a.action, a.label, "
               "a.previous_label, a.created_at, a.reviewer, a.batch FROM annotations a JOIN utterances u ON u.id = a.utterance_id")
        params: list = []
        if utterance_id is not None:
            sql += " WHERE a.utterance_id = ?"
            params.append(int(utterance_id))
        return list(self.db.query(sql + " ORDER BY a.id", params))

    def decided_labels(self) -> dict[int, str | None]:
        """``{utterance id: label}`` of the latest labelling decision per decided utterance."""
        return {r[0]: r[1] for r in self.db.execute(LATEST_LABEL_SQL)}

    def latest_actions(self) -> dict[int, str]:
        """``{utterance id: action}`` of the latest decision (any action, skip included) per utterance."""
        return {r[0]: r[1] for r in self.db.execute(LATEST_DECISION_SQL)}

    def n_decided(self) -> int:
        """How many utterances have a labelling decision."""
        return int(self.db.execute(f"SELECT COUNT(*) FROM ({LATEST_LABEL_SQL})").fetchone()[0])

    def effective_label(self, utterance_id: int) -> str | None:
        """The effective label of one utterance; :class:`NotFoundError` for an unknown id."""
        row = self.db.execute(
            f"SELECT {effective_label_sql()} FROM utterances u {effective_label_join()} WHERE u.id = ?",
            [int(utterance_id)]).fetchone()
        if row is None:
            raise NotFoundError(f"no utterance with id {utterance_id}")
        return row[0]

    def effective_labels(self) -> dict[int, str | None]:
        """``{utterance id: effective label}`` for every utterance, in id order."""
        return {r[0]: r[1] for r in self.db.execute(
            f"SELECT u.id, {effective_label_sql()} FROM utterances u {effective_label_join()} ORDER BY u.id")}

    # -- bulk changes (taxonomy merges and renames) ------------------------------------------

    def labelled_rows(self, labels: Sequence[str]) -> list[dict]:
        """Every utterance whose *effective* label is one of ``labels``, in id order:
        ``id``, ``text``, ``intent`` (the original), ``label`` (the effective one) and
        ``decided`` (1 when a decision, not the export, gave it that label)."""
        labels = list(dict.fromkeys(labels))
        if not labels:
            return []
        marks = ", ".join("?" for _ in labels)
        return list(self.db.query(
            f"SELECT u.id, u.text, u.intent, {effective_label_sql()} AS label, "
            f"el.label IS NOT NULL AS decided FROM utterances u {effective_label_join()} "
            f"WHERE {effective_label_sql()} IN ({marks}) ORDER BY u.id", labels))

    def label_counts(self) -> dict[str, int]:
        """``{effective label: rows}`` over the labelled utterances (unannotated ones left out)."""
        return {r[0]: r[1] for r in self.db.execute(
            f"SELECT {effective_label_sql()} AS lab, COUNT(*) FROM utterances u {effective_label_join()} "
            f"WHERE {effective_label_sql()} IS NOT NULL GROUP BY lab ORDER BY lab")}

    def batch_decisions(self, batch: str) -> list[dict]:
        """The decisions of one bulk change, oldest first (empty for an unknown batch)."""
        return list(self.db.query(
            "SELECT id, utterance_id, action, label, previous_label, created_at, reviewer, batch "
            "FROM annotations WHERE batch = ? ORDER BY id", [batch]))

    def batches(self, prefixes: Sequence[str] = ()) -> list[dict]:
        """One row per bulk change whose id starts with one of ``prefixes`` (all when empty),
        newest first: ``batch``, ``n`` (decisions), ``labels`` (the labels it set, sorted),
        ``created_at``, ``reviewer`` and ``reverted_by`` (the id of the batch that reverted
        it, ``"revert:<batch>"``, or None)."""
        where, params = "batch IS NOT NULL", []
        if prefixes:
            where += " AND (" + " OR ".join("batch LIKE ? ESCAPE '\\'" for _ in prefixes) + ")"
            params = [p.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%" for p in prefixes]
        rows = list(self.db.query(
            "SELECT batch, COUNT(*) AS n, MIN(created_at) AS created_at, "
            f"MIN(reviewer) AS reviewer, MAX(id) AS last_id FROM annotations WHERE {where} GROUP BY batch "
            "ORDER BY last_id DESC", params))
        reverted = {r[0] for r in self.db.execute(
            "SELECT DISTINCT batch FROM annotations WHERE batch LIKE 'revert:%'")}
        labels: dict[str, list[str]] = {}
        for batch, label in self.db.execute(
                f"SELECT DISTINCT batch, label FROM annotations WHERE {where} AND label IS NOT NULL "
                "ORDER BY batch, label", params):
            labels.setdefault(batch, []).append(label)
        for r in rows:
            r["labels"] = labels.get(r["batch"], [])
            r["reverted_by"] = f"revert:{r['batch']}" if f"revert:{r['batch']}" in reverted else None
            del r["last_id"]
        return rows

    def review_outcomes(self) -> list[dict]:
        """Per decided utterance, in the order of its latest labelling decision:
        ``utterance_id``, ``original_label`` (the export's intent), ``label`` and ``action``
        of that decision. What the errors-remaining estimate reads: a row whose label a
        reviewer changed (or marked out of scope) was an error; one kept was right.

        Bulk taxonomy changes (batches ``merge:``, ``rename:`` and their ``revert:``) change
        the label set, not a row's correctness, so they are not review outcomes."""
        sql = ("SELECT a.utterance_id, u.intent AS original_label, a.label, a.action FROM annotations a "
               f"JOIN utterances u ON u.id = a.utterance_id JOIN (SELECT utterance_id, MAX(id) AS mid FROM annotations "
               f"WHERE action IN ({_ACTIONS_SQL}) AND {_NOT_TAXONOMY_SQL} GROUP BY utterance_id) m ON a.id = m.mid "
               "ORDER BY a.id")
        return list(self.db.query(sql, []))

    # -- team mode: decisions per reviewer (read by hl_debug.scoring.agreement) ---------------

    def reviewer_labels(self) -> list[dict]:
        """Each named reviewer's latest labelling decision per row they decided: ``id``,
        ``reviewer``, ``label``, ``decided_at``, with the row's ``text`` and original
        ``intent``; ordered by row, then reviewer. Decisions without a reviewer, and skips,
        are left out (a skip says nothing about the label)."""
        sql = ("SELECT a.utterance_id AS id, a.reviewer, a.label, a.created_at AS decided_at, u.text, u.intent "
               "FROM annotations a JOIN ("
               "SELECT utterance_id, reviewer, MAX(id) AS mid FROM annotations "
               f"WHERE reviewer IS NOT NULL AND action IN ({_ACTIONS_SQL}) GROUP BY utterance_id, reviewer"
               ") m ON a.id = m.mid JOIN utterances u ON u.id = a.utterance_id ORDER BY a.utterance_id, a.reviewer")
        return list(self.db.query(sql))
