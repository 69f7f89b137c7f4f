"""The model report behind ``/report`` and ``/api/confusion``: the one the signals step
stored (:mod:`hl_debug.signals.model_report`), never recomputed here — so the page, ``hl-debug
report`` and ``hl-debug export report`` show the same numbers.

:class:`ReportCache` is what the app asks (``app.extensions["hl_reports"]``): the stored report,
read per request, and — for a confusion-cell click — the cell's ids, asked of storage.
"""

from __future__ import annotations

from typing import Any

from hl_debug.domain import EVAL_SPLITS, REPORT_SPLITS
from hl_debug.errors import ConfigError, MissingStepError
from hl_debug.signals.model_report import MODEL_REPORT, endpoint_report
from hl_debug.storage import Store

__all__ = ["ReportCache", "cell_ids", "check_split", "stored_report"]


def check_split(split: str) -> str:
    """``split`` when it names a row selection of :data:`hl_debug.domain.REPORT_SPLITS`, else
    a ConfigError listing them."""
    if split not in REPORT_SPLITS:
        raise ConfigError(f"unknown split {split!r}; valid: {', '.join(REPORT_SPLITS)}")
    return split


def stored_report(store: Store, endpoint: str | None = None) -> dict[str, Any]:
    """The stored report of ``endpoint`` (default: the active one); MissingStepError naming
    the signals step when there is none for it."""
    endpoint = endpoint or store.active_endpoint()
    rep = endpoint_report(store.report(MODEL_REPORT), endpoint)
    if rep is None:
        raise MissingStepError(f"the database has no model report for endpoint {endpoint!r} yet", step="signals")
    return rep


def cell_ids(store: Store, *, given: str, predicted: str, split: str = "evaluation",
             endpoint: str | None = None) -> list[int]:
    """Ids of annotated rows of ``split`` labelled ``given`` and predicted ``predicted``: the
    rows behind one cell of the stored report's confusion matrix, asked of storage."""
    split = check_split(split)
    usages = None if split == "all" else EVAL_SPLITS if split == "evaluation" else (split,)
    return store.confusion_cell_ids(given, predicted, usages=usages, endpoint=endpoint)


class ReportCache:
    """What the app asks for the model report (``app.extensions["hl_reports"]``): the stored
    report, read per request — a JSON document the signals step replaces, so it is never
    stale — and the rows behind a confusion-matrix cell."""

    def report(self, store: Store, endpoint: str | None = None) -> dict[str, Any] | None:
        """The stored report of ``endpoint`` (default: the active one); None when the signals
        step has stored none for it."""
        return endpoint_report(store.report(MODEL_REPORT), endpoint or store.active_endpoint())

    def cell_ids(self, store: Store, *, given: str, predicted: str, split: str = "evaluation",
                 endpoint: str | None = None) -> list[int]:
        """:func:`cell_ids` (the rows behind one confusion-matrix cell)."""
        return cell_ids(store, given=given, predicted=predicted, split=split, endpoint=endpoint)
