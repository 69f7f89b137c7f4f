"""Taxonomy actions: merge two intents, rename one, or split a group of an intent's rows off
into a new intent, as review decisions.

The taxonomy advisor (the ``taxonomy`` signal) says which intents to merge and which to
split; these functions carry a merge, a rename or a split out the only way hl-debug changes
a label: by appending decisions. Every row whose *effective* label (the latest decision,
else the export's intent) is one of the intents — for a split, only the listed rows of the
group among them — gets a ``relabel`` decision to the new label, all stored in one
transaction under one ``batch`` id (``"merge:<uuid>"``, ``"rename:<uuid>"`` or
``"split:<uuid>"``). The export's labels are never
touched, ``export corrected`` carries the change like any other decision, and
:func:`revert` undoes a batch by appending decisions that restore each row's label from
before it (batch ``"revert:<id>"``).

Each action has a preview (:func:`plan_merge`, :func:`plan_rename`, :func:`plan_split`): how many rows change,
per current label, with examples — computed from the effective labels, so it reflects every
decision already made. :func:`apply` stores exactly what the plan lists, re-reading the rows
inside the write transaction (a decision made between preview and apply is honoured).
Pure of Flask: the web page's JSON routes and the CLI call these.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Any

from hl_debug.domain import OUT_OF_SCOPE
from hl_debug.errors import AnnotationError, MissingFieldError, NotFoundError
from hl_debug.steps.review import check_new_intent
from hl_debug.storage import Store

log = logging.getLogger(__name__)

KINDS = ("merge", "rename", "split")
N_EXAMPLES = 5  # example rows per current label in a preview
N_IDS = 500  # ids a plan lists for the map link (the map keeps at most this many in its URL)


def _intent(value: Any, field: str, known: dict[str, int]) -> str:
    """An existing intent (one that labels rows now), else a typed error naming ``field``."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise MissingFieldError(f"missing field '{field}': the intent to change")
    if not isinstance(value, str):
        raise AnnotationError(f"field '{field}' must be a string, got {type(value).__name__}")
    value = value.strip()
    if value == OUT_OF_SCOPE:
        raise AnnotationError(f"field '{field}': {OUT_OF_SCOPE!r} is reserved and cannot be merged or renamed")
    if value not in known:
        close = [k for k in known if k.casefold() == value.casefold()]
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise AnnotationError(f"field '{field}': unknown intent {value!r}{hint}; no row carries it now",
                              hint="intents: " + ", ".join(sorted(known)))
    return value


def _rows(store: Store, sources: list[str], only: frozenset[int] | None) -> list[dict]:
    rows = store.labelled_rows(sources)
    return rows if only is None else [r for r in rows if r["id"] in only]


def _plan(store: Store, kind: str, sources: list[str], target: str, *, new: bool,
          only: frozenset[int] | None = None) -> dict[str, Any]:
    rows = _rows(store, sources, only)
    by_label: dict[str, dict[str, Any]] = {}
    for src in sources:
        mine = [r for r in rows if r["label"] == src]
        by_label[src] = {"n": len(mine), "n_decided": sum(1 for r in mine if r["decided"]),
                         "n_original": sum(1 for r in mine if r["intent"] == src),
                         "examples": [{"id": r["id"], "text": r["text"], "intent": r["intent"]}
                                      for r in mine[:N_EXAMPLES]]}
    ids = [r["id"] for r in rows]
    out = {"kind": kind, "sources": sources, "target": target, "new_intent": new, "n_rows": len(ids),
           "by_label": by_label, "ids": ids[:N_IDS],
           "n_target": 0 if new else store.label_counts().get(target, 0)}
    if only is not None:  # a split: the listed rows that no longer carry the intent stay as they are
        out["n_skipped"] = len(only) - len(ids)
    return out


def _id_list(ids: Any) -> frozenset[int]:
    if ids is None or (isinstance(ids, (list, tuple)) and not ids):
        raise MissingFieldError("missing field 'ids': the utterance ids of the group to split off")
    if not isinstance(ids, (list, tuple)) or any(isinstance(i, bool) or not isinstance(i, int) for i in ids):
        raise AnnotationError("field 'ids' must be a list of utterance ids (integers)")
    return frozenset(ids)


def plan_merge(store: Store, a: Any, b: Any, *, into: Any = None, allow_clash: bool = False) -> dict[str, Any]:
    """What merging intent ``a`` into ``b`` (or, with ``into``, both into a new intent) changes.

    Returns the preview: ``kind`` ("merge"), ``sources`` (the intents whose rows change),
    ``target`` (their new label), ``new_intent``, ``n_rows`` (rows that change), ``by_label``
    (per current label: ``n``, ``n_decided`` — rows that carry it by an earlier decision —,
    ``n_original`` and a few ``examples``), ``ids`` (the first 500) and ``n_target`` (rows
    already labelled ``target``, which stay as they are).

    Raises
    ------
    MissingFieldError
        ``a``, ``b`` or an empty ``into`` (when given as a blank string) is missing.
    AnnotationError
        An unknown or reserved intent, ``a == b``, or a bad/clashing new name
        (:func:`~hl_debug.steps.review.check_new_intent`).
    """
    store.require_utterances()
    known = store.label_counts()
    a, b = _intent(a, "a", known), _intent(b, "b", known)
    if a == b:
        raise AnnotationError(f"fields 'a' and 'b' name the same intent {a!r}; merge two different intents "
                              "(to change one intent's name, rename it)")
    if into is None:
        return _plan(store, "merge", [a], b, new=False)
    name = check_new_intent(into, [k for k in known if k not in (a, b)], allow_clash=allow_clash)
    if name in (a, b):  # "both into a" is "b into a"
        return _plan(store, "merge", [b if name == a else a], name, new=False)
    return _plan(store, "merge", [a, b], name, new=True)


def plan_rename(store: Store, a: Any, new_name: Any, *, allow_clash: bool = False) -> dict[str, Any]:
    """What renaming intent ``a`` to ``new_name`` changes (the preview, as :func:`plan_merge`).

    ``new_name`` must be a new intent: to give ``a``'s rows an existing intent's label, merge.
    """
    store.require_utterances()
    known = store.label_counts()
    a = _intent(a, "a", known)
    name = check_new_intent(new_name, [k for k in known if k != a], allow_clash=allow_clash)
    if name == a:
        raise AnnotationError(f"field 'label': {a!r} is already the intent's name")
    return _plan(store, "rename", [a], name, new=True)


def split_group_ids(report: Any, intent: Any, group: Any) -> list[int]:
    """The member ids of group ``group`` (its number on the split card, 1 = the largest) of
    ``intent``'s split record in the ``taxonomy`` signal's stored report (at most the 2,000
    nearest the group's centroid, as the report keeps them): the ``ids`` of a split."""
    if group is None or group == "":
        raise MissingFieldError("missing field 'group': the number of the split card's group to split off "
                                "(1 = the largest)")
    if isinstance(group, bool) or not isinstance(group, int) or group < 1:
        raise AnnotationError(f"field 'group' must be a positive integer (the group's number on the split card), "
                              f"got {group!r}")
    splits = report.get("split", []) if isinstance(report, dict) else []
    rec = next((s for s in splits if s.get("intent") == intent), None)
    if rec is None or group > len(rec.get("groups", [])):
        raise NotFoundError(f"no split group {group} of intent {intent!r} in the taxonomy analysis",
                            hint="run `hl-debug signals`; the /taxonomy page's split cards number the groups")
    return [int(i) for i in rec["groups"][group - 1]["ids"]]


def plan_split(store: Store, a: Any, new_name: Any, ids: Any, *, allow_clash: bool = False) -> dict[str, Any]:
    """What splitting the rows ``ids`` off intent ``a`` into the new intent ``new_name``
    changes (the preview, as :func:`plan_merge`, plus ``n_skipped``: listed rows that do not
    carry ``a`` now — decided elsewhere since the advisor ran, or never ``a``'s — and stay).

    ``ids`` is the group the split card shows (``report["split"][...]["groups"][k]["ids"]``);
    the rest of ``a``'s rows keep ``a``.
    """
    store.require_utterances()
    known = store.label_counts()
    a = _intent(a, "a", known)
    only = _id_list(ids)
    name = check_new_intent(new_name, list(known), allow_clash=allow_clash)
    if name == a:
        raise AnnotationError(f"field 'label': {a!r} is the intent being split; name the new intent")
    p = _plan(store, "split", [a], name, new=True, only=only)
    if not p["n_rows"]:
        raise AnnotationError(f"none of the {len(only)} listed rows carries {a!r} now: nothing to split off",
                              hint="run `hl-debug signals` again for the current groups")
    if p["n_rows"] == known.get(a):
        raise AnnotationError(f"the listed rows are all of {a!r}'s rows: that is a rename, not a split")
    return p


def plan(store: Store, kind: Any, a: Any, b: Any = None, *, label: Any = None,
         allow_clash: Any = False, ids: Any = None) -> dict[str, Any]:
    """The preview of one action: ``kind`` "merge" (``a`` into ``b``, or with ``label`` both
    into that new intent), "rename" (``a`` to ``label``) or "split" (the rows ``ids`` of
    ``a`` into the new intent ``label``)."""
    if kind not in KINDS:
        raise AnnotationError(f"unknown action kind {kind!r}; valid: {', '.join(KINDS)}")
    if not isinstance(allow_clash, bool):
        raise AnnotationError(f"field 'allow_clash' must be true or false, got {allow_clash!r}")
    if ids is not None and kind != "split":
        raise AnnotationError(f"field 'ids' does not apply to a {kind}; it lists the rows a split moves")
    if kind == "split":
        if b not in (None, ""):
            raise AnnotationError("field 'b' does not apply to a split; send 'a', the new name in 'label' and 'ids'")
        return plan_split(store, a, label, ids, allow_clash=allow_clash)
    if kind == "merge":
        if b is None or b == "":
            raise MissingFieldError("missing field 'b': the intent to merge 'a' into (with 'label': the second "
                                    "intent, both taking that new name)")
        return plan_merge(store, a, b, into=label if label not in (None, "") else None, allow_clash=allow_clash)
    if b not in (None, ""):
        raise AnnotationError("field 'b' does not apply to a rename; send 'a' and the new name in 'label'")
    return plan_rename(store, a, label, allow_clash=allow_clash)


def apply(store: Store, kind: Any, a: Any, b: Any = None, *, label: Any = None, allow_clash: Any = False,
          ids: Any = None, expected_rows: Any = None, reviewer: str | None = None) -> dict[str, Any]:
    """Carry out an action: one ``relabel`` decision per row of the plan, one transaction,
    one batch id. Returns the plan plus ``batch``.

    ``expected_rows``: the ``n_rows`` the user saw in the preview; when given and the rows
    changed since (someone decided in between), nothing is stored and AnnotationError says so.
    """
    if expected_rows is not None and (isinstance(expected_rows, bool) or not isinstance(expected_rows, int)):
        raise AnnotationError(f"field 'expected_rows' must be an integer, got {expected_rows!r}")
    with store.transaction():  # plan and write together: the previous labels stored are current
        p = plan(store, kind, a, b, label=label, allow_clash=allow_clash, ids=ids)
        if expected_rows is not None and expected_rows != p["n_rows"]:
            raise AnnotationError(f"the preview listed {expected_rows} rows but {p['n_rows']} carry the intent(s) "
                                  "now (decisions were made since); preview again")
        if not p["n_rows"]:
            raise AnnotationError(f"no rows carry {', '.join(p['sources'])}: nothing to change")
        batch = f"{p['kind']}:{uuid.uuid4().hex}"
        rows = _rows(store, p["sources"], _id_list(ids) if p["kind"] == "split" else None)
        store.add_annotations([{"utterance_id": r["id"], "action": "relabel", "label": p["target"],
                                "previous_label": r["label"], "reviewer": reviewer, "batch": batch} for r in rows])
    log.info("%s %s -> %s: %d row(s), batch %s", p["kind"], " + ".join(p["sources"]), p["target"], len(rows), batch)
    return {**p, "batch": batch}


def _batch(store: Store, batch: Any) -> tuple[str, list[dict]]:
    if batch is None or batch == "":
        raise MissingFieldError("missing field 'batch': the id of the merge, rename or split to revert")
    if not isinstance(batch, str):
        raise AnnotationError(f"field 'batch' must be a string, got {type(batch).__name__}")
    if not batch.startswith(tuple(f"{k}:" for k in KINDS)):
        raise AnnotationError(f"batch {batch!r} is not a merge, rename or split (ids start with 'merge:', "
                              "'rename:' or 'split:')")
    rows = store.batch_decisions(batch)
    if not rows:
        raise NotFoundError(f"no merge, rename or split with batch id {batch!r}",
                            hint="the page's 'Changes' list (or `hl-debug taxonomy batches`) names them")
    return batch, rows


def plan_revert(store: Store, batch: Any) -> dict[str, Any]:
    """What reverting ``batch`` changes: each of its rows whose label is still the one the
    batch set goes back to its label from before; rows decided again since are left alone
    (``n_skipped``). Returns ``batch``, ``n_rows``, ``n_skipped``, ``by_label`` ({restored
    label: rows}) and the ``rows`` to write."""
    batch, decisions = _batch(store, batch)
    if store.batch_decisions(f"revert:{batch}"):
        raise AnnotationError(f"batch {batch!r} was already reverted")
    current = store.effective_labels()
    rows: list[dict] = []
    skipped = 0
    by_label: dict[str, int] = {}
    for d in decisions:
        if current.get(d["utterance_id"]) != d["label"] or d["previous_label"] is None:
            skipped += 1
            continue
        rows.append({"utterance_id": d["utterance_id"], "action": "relabel", "label": d["previous_label"],
                     "previous_label": d["label"]})
        by_label[d["previous_label"]] = by_label.get(d["previous_label"], 0) + 1
    if not rows:
        raise AnnotationError(f"nothing to revert: all {skipped} rows of {batch!r} were decided again since",
                              hint="change them back one by one on the map")
    return {"batch": batch, "n_rows": len(rows), "n_skipped": skipped, "by_label": by_label, "rows": rows}


def revert(store: Store, batch: Any, *, reviewer: str | None = None) -> dict[str, Any]:
    """Undo a merge, rename or split: append, in one transaction, a decision restoring each row's
    pre-batch label (batch ``"revert:<batch>"``). Returns :func:`plan_revert`'s figures
    (without ``rows``) plus ``revert_batch``."""
    with store.transaction():
        p = plan_revert(store, batch)
        new = f"revert:{p['batch']}"
        store.add_annotations([{**r, "reviewer": reviewer, "batch": new} for r in p["rows"]])
    log.info("reverted %s: %d row(s) restored, %d left as decided since", p["batch"], p["n_rows"], p["n_skipped"])
    return {**{k: v for k, v in p.items() if k != "rows"}, "revert_batch": new}


def changes(store: Store) -> list[dict]:
    """The merges, renames and splits made so far, newest first (see ``Store.batches``)."""
    return store.batches(tuple(f"{k}:" for k in KINDS))


__all__: Sequence[str] = ("apply", "changes", "plan", "plan_merge", "plan_rename", "plan_revert", "plan_split",
                          "revert", "split_group_ids")
