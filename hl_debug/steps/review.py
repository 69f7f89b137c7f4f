"""Review decisions made in the web app, and the corrected export they produce.

Decisions are appended to the ``annotations`` table and never change the original export
labels in ``utterances``: the *effective* label of a row is the label of its latest
labelling decision (``relabel``, ``accept`` or ``keep``), else its original intent.
``skip`` is recorded (so review progress is visible) but changes nothing.

:func:`corrected_records` turns the original export records plus the decisions back into
the platform's own format, ready to upload.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from hl_debug.domain import ACTIONS, SPLITS
from hl_debug.errors import AnnotationError, MissingFieldError
from hl_debug.settings import default
from hl_debug.signals.registry import get_signal
from hl_debug.storage import Store, Table

log = logging.getLogger(__name__)

__all__ = ["ACTIONS", "annotation_rows", "corrected_records", "record_decision", "signal_table"]


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


def record_decision(store: Store, utterance_id: Any, action: Any, label: Any = None) -> dict:
    """Validate and append one decision; returns the stored row plus the effective label.

    Parameters
    ----------
    utterance_id:
        An existing utterance id (int, or a string of digits).
    action:
        ``relabel`` (``label`` required), ``accept`` (takes the suggested label; a ``label``
        given must equal it), ``keep`` (confirms the current effective label) or ``skip``.
    label:
        One of the project's intents, for ``relabel`` (and optionally ``accept``).

    Raises
    ------
    MissingFieldError
        A required field is missing (a subclass of AnnotationError).
    AnnotationError
        Malformed field, unknown action or label, nothing to accept.
    NotFoundError
        No utterance with that id.
    """
    if utterance_id is None or utterance_id == "":
        raise MissingFieldError("missing field 'id': the utterance id to annotate")
    if isinstance(utterance_id, bool) or not (isinstance(utterance_id, int) or
                                              (isinstance(utterance_id, str) and utterance_id.isdigit())):
        raise AnnotationError(f"field 'id' must be an integer utterance id, got {utterance_id!r}")
    uid = int(utterance_id)
    if action is None or action == "":
        raise MissingFieldError(f"missing field 'action': one of {', '.join(ACTIONS)}")
    if action not in ACTIONS:
        raise AnnotationError(f"unknown action {action!r}; valid: {', '.join(ACTIONS)}")
    if label is not None and not isinstance(label, str):
        raise AnnotationError(f"field 'label' must be a string, got {type(label).__name__}")
    current = store.effective_label(uid)  # NotFoundError for an unknown id
    intents = store.intents()
    if action == "relabel":
        if not label:
            raise MissingFieldError("missing field 'label': action 'relabel' needs the new label")
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
    else:
        label = None
    if label is not None and label not in intents:
        raise AnnotationError(f"unknown label {label!r}; valid: {', '.join(intents)}")
    row = store.add_annotation(uid, action, label, current)
    row["effective_label"] = label if action != "skip" else current
    log.info("utterance %d: %s -> %s", uid, action, row["effective_label"])
    return row


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
