"""The ``/discover`` page: what unannotated traffic asks that no intent covers.

It reads what the out-of-scope signals store (see ``hl_debug/signals/out_of_scope.py``): the
``new_intents`` table (one row per group of out-of-scope candidates: size, keywords, nearest
intents, verdict, examples, member ids), the ``oos`` table (every utterance's out-of-scope
score, for the group members' rows) and the ``out_of_scope`` report (the estimated share of
out-of-scope rows among the unannotated, with its interval). From a group the user names a
new intent for its rows, or marks them ``out_of_scope``: ``static/discover.js`` posts one
decision for the group (or the rows ticked) to ``/api/annotations/batch``.

Before the signals have run — or when they are not installed — the page says what to run.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, current_app, render_template

from hl_debug.domain import OUT_OF_SCOPE
from hl_debug.errors import NotFoundError
from hl_debug.signals.registry import all_signals
from hl_debug.storage import Store, Table
from webapp.db import evidence, get_store, signal_table

bp = Blueprint("discover", __name__)

GROUPS_SIGNAL = "new_intents"  # the candidate groups' table
SCORES_SIGNAL = "oos"  # every row's out-of-scope score
REPORT = "out_of_scope"  # the stored summary: the estimated share and its interval
MAP_IDS = 500  # ids a group's map link carries (the map keeps at most this many in its URL)
MISSING = ("No out-of-scope analysis yet. Run `hl-debug signals` (or `hl-debug run EXPORT` for the whole "
           "pipeline) to score every utterance and group the ones no intent covers.")


def optional_table(name: str) -> Table | None:
    """The table of the registered signal ``name`` (or of the one whose table is called
    ``name``); None when no such signal is installed."""
    try:
        return signal_table(name)
    except NotFoundError:
        return next((cls.table for cls in all_signals() if cls.table is not None and cls.table.name == name), None)


def parse_ids(raw: Any) -> list[int]:
    """A group's ``ids`` column (a JSON list) as ints; [] for anything unreadable."""
    try:
        ids = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError:
        return []
    return [int(i) for i in ids or () if isinstance(i, int) or (isinstance(i, str) and i.isdigit())]


def parse_nearest(raw: Any) -> list[tuple[str, float | None]]:
    """``"intent (0.71); intent (0.64)"`` -> ``[("intent", 0.71), ("intent", 0.64)]``."""
    out: list[tuple[str, float | None]] = []
    for part in str(raw or "").split(";"):
        part = part.strip()
        if not part:
            continue
        name, _, sim = part.rpartition(" (")
        try:
            out.append((name, float(sim.rstrip(")"))) if name else (part, None))
        except ValueError:
            out.append((part, None))
    return out


def share_summary(report: Any) -> dict[str, Any] | None:
    """The ``out_of_scope`` report's figures the page shows, or None without a report."""
    if not isinstance(report, dict):
        return None
    keys = ("target_fpr", "threshold", "n_candidates", "n_candidates_unannotated", "n_unannotated",
            "estimated_share", "estimated_share_low", "estimated_share_high", "n_groups")
    return {k: report.get(k) for k in keys}


def candidate_groups(store: Store, table: Table, *, members: int) -> list[dict]:
    """The groups, best first, each with its parsed columns and its first ``members`` rows
    (inspector rows: text, effective label, latest decision, out-of-scope score)."""
    groups = store.table_rows(table)
    groups.sort(key=lambda g: (g.get("rank") is None, g.get("rank") or 0, g.get("group_id")))
    shown: list[int] = []
    for g in groups:
        g["member_ids"] = parse_ids(g.get("ids"))
        g["nearest"] = parse_nearest(g.get("nearest_intents"))
        g["example_list"] = [e.strip() for e in str(g.get("examples") or "").split(" | ") if e.strip()]
        g["keyword_list"] = [k.strip() for k in str(g.get("keywords") or "").split(",") if k.strip()]
        g["map_ids"] = ",".join(map(str, g["member_ids"][:MAP_IDS]))
        g["new_intent"] = str(g.get("verdict") or "").strip().lower() == "new intent"
        shown += g["member_ids"][:members]
    rows = {r["id"]: r for r in store.inspector_rows(shown, evidence=evidence())}
    for g in groups:
        g["rows"] = [rows[i] for i in g["member_ids"][:members] if i in rows]
        g["n_decided"] = sum(1 for r in g["rows"] if r.get("decision") not in (None, "skip"))
    return groups


def queue_groups(store: Store, queue: Table, rows: list[dict]) -> tuple[list[dict], dict[int, dict]]:
    """Split a page of the annotation ``queue`` into its in-scope rows and ``{group id:
    {"group": the group's new_intents row or {}, "rows": [...]}}``.

    A row's group is the queue's ``oos_group_id`` (else, before the queue carries it, the
    out-of-scope evidence ``oos_group``). The page pre-selects the model's label, except for a
    grouped row, any out-of-scope candidate (``is_candidate`` in the ``oos`` table) and a row
    whose queue ``predicted_label`` is empty (the queue's own "fits no intent" rule): offering
    an in-scope intent for those would invite a wrong label.
    """
    columns = store.table_columns(queue.name)
    queued = {r["id"]: r for r in store.table_rows(queue, ids=[r["id"] for r in rows])}
    for r in rows:
        mine = queued.get(r["id"], {})
        r["oos_group_id"] = mine.get("oos_group_id") if "oos_group_id" in columns else r.get("oos_group")
        if "predicted_label" in columns and r["id"] in queued and mine.get("predicted_label") is None:
            r["predicted_label"] = None  # the queue decided not to suggest a label for it
    scores = optional_table(SCORES_SIGNAL)
    if scores is not None and "is_candidate" in store.table_columns(scores.name):
        candidates = {r["id"] for r in store.table_rows(scores, ids=[r["id"] for r in rows], equals={"is_candidate": 1})}
        for r in rows:
            if r["id"] in candidates:
                r["predicted_label"] = None
                r["oos_candidate"] = True
    grouped = [r for r in rows if r["oos_group_id"] is not None]
    if not grouped:
        return rows, {}
    table = optional_table(GROUPS_SIGNAL)
    known = ({g["group_id"]: g for g in store.table_rows(table, ids=sorted({r["oos_group_id"] for r in grouped}))}
             if table is not None else {})
    groups: dict[int, dict] = {}
    for r in grouped:
        r["predicted_label"] = None
        r["oos_candidate"] = True
        groups.setdefault(r["oos_group_id"], {"group": known.get(r["oos_group_id"], {}), "rows": []})["rows"].append(r)
    return [r for r in rows if r["oos_group_id"] is None], groups


@bp.get("/discover")
def discover_view():
    """Candidate new intents among the out-of-scope rows, with one action per group."""
    store = get_store()
    store.require_utterances()
    table = optional_table(GROUPS_SIGNAL)
    summary = share_summary(store.report(REPORT))
    ran = table is not None and store.table_exists(table.name)
    groups = candidate_groups(store, table, members=current_app.config["DISCOVER_MEMBERS"]) if ran and table else []
    labels = [lab for lab in store.review_labels() if lab != OUT_OF_SCOPE]
    return render_template("discover.html", missing=None if ran or summary else MISSING, groups=groups,
                           summary=summary, labels=labels, out_of_scope=OUT_OF_SCOPE,
                           has_scores=optional_table(SCORES_SIGNAL) is not None)
