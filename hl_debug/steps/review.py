"""Review decisions made in the web app, and the corrected export they produce.

Decisions are appended to the ``annotations`` table and never change the original export
labels in ``utterances``: the *effective* label of a row is the label of its latest
labelling decision (``relabel``, ``accept``, ``keep`` or ``out_of_scope``), else its original
intent. ``skip`` is recorded (so review progress is visible) but changes nothing. A review
may create an intent — a ``relabel`` to a new name, sent with ``new_intent=True`` — and mark
rows ``out_of_scope`` (the reserved intent :data:`~hl_debug.domain.OUT_OF_SCOPE`); both are
ordinary labels from then on, and the corrected export carries them.

:func:`corrected_records` turns the original export records plus the decisions back into
the platform's own format, ready to upload.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from hl_debug.domain import ACTIONS, MAX_ID, MAX_INTENT_NAME, OUT_OF_SCOPE, SPLITS
from hl_debug.errors import AnnotationError, MissingFieldError, NotFoundError
from hl_debug.settings import default
from hl_debug.signals.registry import get_signal
from hl_debug.storage import Store, Table

log = logging.getLogger(__name__)

__all__ = ["ACTIONS", "annotation_rows", "check_new_intent", "corrected_records", "record_decision",
           "record_decisions", "signal_table"]


def signal_table(name: str) -> Table:
    """The declared table of the registered signal ``name`` (``issues``, ``queue``, ...)."""
    table = get_signal(name).table
    if table is None:
        raise ValueError(f"signal {name!r} writes no table")
    return table


def _suggestion(store: Store, utterance_id: int) -> str | None:
    """The label the pipeline suggests for a row: the issue's suggestion, else the queue's prediction."""
    for signal, column in (("issues", "suggested_label"), ("queue", "predicted_label")):
        table = signal_table(signal)
        if column in store.table_columns(table.name):
            rows = store.table_rows(table, ids=[utterance_id])
            if rows and rows[0].get(column):
                return rows[0][column]
    return None


def check_new_intent(name: Any, existing: Sequence[str], *, allow_clash: bool = False) -> str:
    """Validate the name of an intent a review creates; returns it without surrounding blanks.

    A new intent needs a non-empty name of at most :data:`~hl_debug.domain.MAX_INTENT_NAME`
    characters on one line, not the reserved :data:`~hl_debug.domain.OUT_OF_SCOPE`, and not
    an existing label up to case (``Lost_Card`` beside ``lost_card`` is a typo more often than a
    new intent) unless ``allow_clash``.

    Raises
    ------
    MissingFieldError
        No name.
    AnnotationError
        Any other problem, naming the field ``label``.
    """
    if name is None or (isinstance(name, str) and not name.strip()):
        raise MissingFieldError("missing field 'label': the name of the new intent")
    if not isinstance(name, str):
        raise AnnotationError(f"field 'label' must be a string, got {type(name).__name__}")
    name = name.strip()
    if len(name) > MAX_INTENT_NAME:
        raise AnnotationError(f"field 'label': a new intent's name has at most {MAX_INTENT_NAME} characters, "
                              f"this one has {len(name)}")
    if any(not ch.isprintable() for ch in name):
        raise AnnotationError("field 'label': a new intent's name is one line of printable characters")
    if name.casefold() == OUT_OF_SCOPE.casefold():
        raise AnnotationError(f"field 'label': {OUT_OF_SCOPE!r} is reserved; use action 'out_of_scope'")
    same = next((e for e in existing if e.casefold() == name.casefold()), None)
    if same is not None and not allow_clash:
        if same == name:
            raise AnnotationError(f"field 'label': intent {name!r} already exists; to label rows with it, "
                                  "send the decision without new_intent")
        raise AnnotationError(f"field 'label': new intent {name!r} clashes with the existing intent {same!r} "
                              "(the names differ only in case); use the existing one, choose another name, "
                              "or send allow_clash=true to create it anyway")
    return name


def _check_id(utterance_id: Any) -> int:
    if utterance_id is None or utterance_id == "":
        raise MissingFieldError("missing field 'id': the utterance id to annotate")
    if isinstance(utterance_id, bool) or not (isinstance(utterance_id, int) or (
            isinstance(utterance_id, str) and utterance_id.isascii() and utterance_id.isdigit())):
        raise AnnotationError(f"field 'id' must be an integer utterance id, got {str(utterance_id)[:40]!r}")
    if isinstance(utterance_id, str) and len(utterance_id) > 20:
        raise NotFoundError(f"field 'id': no utterance with id {utterance_id[:40]}...")
    value = int(utterance_id)
    if not 0 <= value <= MAX_ID:  # ingest accepts no other id: it cannot exist (and SQLite could not look it up)
        raise NotFoundError(f"field 'id': no utterance with id {value}")
    return value


def _check_request(action: Any, label: Any, new_intent: Any, allow_clash: Any) -> None:
    if action is None or action == "":
        raise MissingFieldError(f"missing field 'action': one of {', '.join(ACTIONS)}")
    if action not in ACTIONS:
        raise AnnotationError(f"unknown action {action!r}; valid: {', '.join(ACTIONS)}")
    if label is not None and not isinstance(label, str):
        raise AnnotationError(f"field 'label' must be a string, got {type(label).__name__}")
    for field, value in (("new_intent", new_intent), ("allow_clash", allow_clash)):
        if not isinstance(value, bool):
            raise AnnotationError(f"field '{field}' must be true or false, got {value!r}")
    if new_intent and action != "relabel":
        raise AnnotationError(f"field 'new_intent' only applies to action 'relabel', not {action!r}")
    if action == OUT_OF_SCOPE and label not in (None, "", OUT_OF_SCOPE):
        raise AnnotationError(f"action 'out_of_scope' sets the label {OUT_OF_SCOPE!r}; leave out field 'label' "
                              f"(got {label!r})")


def _decision(store: Store, uid: int, action: str, label: str | None, labels: Sequence[str],
              created: str | None) -> dict:
    """The row to store for one already-checked request (``created``: the new intent's name)."""
    current = store.effective_label(uid)  # NotFoundError for an unknown id
    if action == "relabel":
        if created is not None:
            label = created
        elif not label:
            raise MissingFieldError("missing field 'label': action 'relabel' needs the new label "
                                    "(or new_intent=true to create one)")
    elif action == "accept":
        suggested = _suggestion(store, uid)
        if suggested is None:
            raise AnnotationError(f"utterance {uid} has no suggested label to accept; use action 'relabel'")
        if label and label != suggested:
            raise AnnotationError(
                f"label {label!r} is not the suggestion {suggested!r} for utterance {uid}; use action 'relabel'")
        label = suggested
    elif action == "keep":
        if current is None:
            raise AnnotationError(f"utterance {uid} has no label to keep; use action 'relabel' or 'skip'")
        label = current
    elif action == OUT_OF_SCOPE:
        label = OUT_OF_SCOPE
    else:
        label = None
    if label is not None and label not in labels and label != created and action != OUT_OF_SCOPE:
        if label == OUT_OF_SCOPE:
            raise AnnotationError(f"label {OUT_OF_SCOPE!r} is set by action 'out_of_scope', not 'relabel'")
        raise AnnotationError(f"unknown label {label!r}; valid: {', '.join(labels)} "
                              "(or send new_intent=true to create it)")
    return {"utterance_id": uid, "action": action, "label": label, "previous_label": current}


def _effective(row: dict) -> dict:
    row["effective_label"] = row["label"] if row["action"] != "skip" else row["previous_label"]
    return row


def record_decision(store: Store, utterance_id: Any, action: Any, label: Any = None, *,
                    new_intent: Any = False, allow_clash: Any = False, reviewer: str | None = None,
                    batch: str | None = None) -> dict:
    """Validate and append one decision; returns the stored row plus the effective label.

    Parameters
    ----------
    utterance_id:
        An existing utterance id (int, or a string of digits).
    action:
        ``relabel`` (``label`` required), ``accept`` (takes the suggested label; a ``label``
        given must equal it), ``keep`` (confirms the current effective label), ``skip``, or
        ``out_of_scope`` (labels the row :data:`~hl_debug.domain.OUT_OF_SCOPE`).
    label:
        For ``relabel``: one of the project's labels (its intents and those earlier reviews
        created), or with ``new_intent`` the name of a new intent.
    new_intent, allow_clash:
        ``new_intent=True`` creates ``label`` as a new intent (see :func:`check_new_intent`;
        ``allow_clash=True`` accepts a name that differs from an existing one only in case).
    reviewer, batch:
        Stored with the decision: who made it (team mode) and the bulk change it belongs to.

    Raises
    ------
    MissingFieldError
        A required field is missing (a subclass of AnnotationError).
    AnnotationError
        Malformed field, unknown action or label, nothing to accept, a bad new intent name.
    NotFoundError
        No utterance with that id.
    """
    return record_decisions(store, [_check_id(utterance_id)], action, label, new_intent=new_intent,
                            allow_clash=allow_clash, reviewer=reviewer, batch=batch)[0]


def record_decisions(store: Store, utterance_ids: Any, action: Any, label: Any = None, *,
                     new_intent: Any = False, allow_clash: Any = False, limit: int = 10_000,
                     reviewer: str | None = None, batch: str | None = None) -> list[dict]:
    """One decision for each of ``utterance_ids`` (e.g. every row of a candidate group), all
    validated first and then stored in one transaction: all or nothing. Arguments and errors
    as :func:`record_decision`; ``utterance_ids`` is a non-empty list of at most ``limit`` ids
    (repeats are stored once)."""
    if utterance_ids is None or utterance_ids == []:
        raise MissingFieldError("missing field 'ids': the utterance ids to annotate")
    if not isinstance(utterance_ids, list):
        raise AnnotationError(f"field 'ids' must be a list of utterance ids, got {type(utterance_ids).__name__}")
    if len(utterance_ids) > limit:
        raise AnnotationError(f"field 'ids': at most {limit} utterances per decision, got {len(utterance_ids)}")
    uids = list(dict.fromkeys(_check_id(u) for u in utterance_ids))
    _check_request(action, label, new_intent, allow_clash)
    # Read the current labels and append the decisions in ONE write transaction (BEGIN
    # IMMEDIATE takes the write lock first): a decision made meanwhile by another request
    # cannot slip between the read and the insert, so each previous_label is the label it
    # really replaced.
    with store.transaction():
        labels = store.review_labels()
        created = check_new_intent(label, labels, allow_clash=allow_clash) if new_intent else None
        rows = [{**_decision(store, uid, action, label, labels, created), "reviewer": reviewer, "batch": batch}
                for uid in uids]
        stored = [_effective(r) for r in store.add_annotations(rows)]
    log.info("%d utterance(s): %s -> %s%s", len(stored), action, stored[0]["effective_label"] if stored else None,
             " (new intent)" if created else "")
    return stored


def corrected_records(store: Store, *, new_usage: str = default("new_usage")) -> list[dict]:
    """The export in the platform's format, in its original order, with decisions applied.

    Each record keeps every original field; ``data`` stays a JSON string whose ``intent``
    is the effective label. Unannotated rows that were labelled become ``complete: true``
    with ``usage`` ``new_usage`` (the platform requires a split for complete rows); the
    annotated rows keep their split.
    """
    if new_usage not in SPLITS:
        raise AnnotationError(f"unknown usage {new_usage!r} for newly labelled rows; valid: {', '.join(SPLITS)}")
    store.require_utterances()
    decided = store.decided_labels()
    out = []
    for row in store.export_records():
        rec = json.loads(row["raw"])
        if row["id"] in decided and decided[row["id"]] is not None:
            label = decided[row["id"]]
            data = rec.get("data")
            was_string = isinstance(data, str)
            data = json.loads(data) if was_string else dict(data)
            data["intent"] = label
            rec["data"] = json.dumps(data, ensure_ascii=False)
            if not rec.get("complete"):
                rec["complete"] = True
                if rec.get("usage") is None:
                    rec["usage"] = new_usage
        if not isinstance(rec.get("data"), str):
            rec["data"] = json.dumps(rec["data"], ensure_ascii=False)
        out.append(rec)
    return out


def annotation_rows(store: Store) -> list[dict]:
    """Every decision, oldest first, for ``hl-debug export annotations``."""
    return store.annotations()
