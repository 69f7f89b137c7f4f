"""The model report of one endpoint, read from the store: the numbers behind ``/report``
and ``/api/confusion``.

The metrics are :mod:`hl_debug.scoring.report`'s (the same functions the Signals step
stores its report with); this module only reads their input arrays from the cached
predictions, so the page works with any endpoint in the store, and turns an unknown
split into a :class:`ConfigError` (a 400).

At 100k utterances reading those arrays takes about a second and the metrics a few more,
so :class:`ReportCache` keeps both per database state and endpoint (the app holds one, in
``app.extensions["hl_reports"]``).
"""

from __future__ import annotations

import hashlib
import json
import threading
from typing import Any

import numpy as np

from hl_debug.errors import ConfigError
from hl_debug.storage import Store

from webapp.points import warm_in_background

__all__ = ["ReportCache", "cell_ids", "check_split", "compute", "report_state"]

# hl_debug.steps.signals (and scikit-learn with it) is imported where a report is computed, not
# here: at 2.5 s on two cores it would delay every start of the app, /report or not.


def check_split(split: str) -> str:
    """``split`` when it names a row selection of ``hl_debug.scoring.report.SPLITS``, else a
    ConfigError listing them."""
    from hl_debug.scoring.report import SPLITS

    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    return split


def _columns(store: Store, endpoint: str | None) -> dict[str, Any]:
    """One entry per utterance (by id): ids, texts, given, usage, predicted, confidence, entropy.

    Two plain reads aligned by text hash here rather than one join in SQLite (an index
    probe per row: 2x slower at 100k rows), and without the stored distributions.
    """
    u = store.column_lists("utterances", ["id", "text", "intent", "usage", "text_hash"])
    pr = store.column_lists("predictions", ["text_hash", "label", "confidence", "entropy"], endpoint=endpoint)
    row_of = {h: k for k, h in enumerate(pr["text_hash"])}
    pos = np.fromiter((row_of.get(h, -1) for h in u["text_hash"]), dtype=np.int64, count=len(u["id"]))
    hit = pos >= 0

    def take(values: list, numeric: bool) -> np.ndarray:
        out = np.full(len(pos), np.nan if numeric else None, dtype=np.float64 if numeric else object)
        if values:
            out[hit] = np.array(values, dtype=np.float64 if numeric else object)[pos[hit]]
        return out

    return {"ids": u["id"], "texts": u["text"], "given": u["intent"], "usage": u["usage"],
            "predicted": take(pr["label"], False).tolist(), "confidence": take(pr["confidence"], True),
            "entropy": take(pr["entropy"], True)}


def compute(store: Store, *, endpoint: str | None = None, n_pairs: int = 10) -> dict[str, Any]:
    """:func:`~hl_debug.scoring.report.model_report` of ``endpoint`` (default: the active one)
    for every split of ``hl_debug.scoring.report.SPLITS``."""
    endpoint = endpoint or store.active_endpoint()
    return _report(_columns(store, endpoint), endpoint, n_pairs)


def _report(columns: dict[str, Any], endpoint: str | None, n_pairs: int) -> dict[str, Any]:
    from hl_debug.scoring.report import SPLITS, model_report

    return model_report(**columns, endpoint=endpoint or "", splits=SPLITS, n_pairs=n_pairs)


def _cell(columns: dict[str, Any], given: str, predicted: str, split: str) -> list[int]:
    from hl_debug.scoring.report import confusion_cell

    return confusion_cell(ids=columns["ids"], given=columns["given"], usage=columns["usage"],
                          predicted=columns["predicted"], given_label=given, predicted_label=predicted,
                          split=check_split(split))


def cell_ids(store: Store, *, given: str, predicted: str, split: str = "evaluation",
             endpoint: str | None = None) -> list[int]:
    """Ids of annotated rows of ``split`` labelled ``given`` and predicted ``predicted``."""
    return _cell(_columns(store, endpoint or store.active_endpoint()), given, predicted, split)


def report_state(store: Store) -> str:
    """A fingerprint of everything the model report reads: utterances (texts, annotations,
    splits), predictions and the active endpoint. Every pipeline step that writes those
    records a run, so the runs' count and last id cover them (see :meth:`Store.map_state`).

    Review decisions are left out on purpose: the report scores the model against the
    export's annotations (as the Signals step's stored report does), never the reviewed
    labels, so a decision cannot change it — and must not cost a recomputation of a few
    seconds at 100k rows.
    """
    state = {k: v for k, v in store.map_state().items() if k != "decisions"}
    return hashlib.sha1(json.dumps(state, sort_keys=True).encode()).hexdigest()[:20]


class ReportCache:
    """The report's input columns and the report itself, per database and endpoint, kept
    until :func:`report_state` changes.

    ``n_pairs`` is the number of most-confused pairs per split (fixed per cache, so one
    cached report answers every split of ``/report``).
    """

    def __init__(self, *, n_pairs: int = 10) -> None:
        self.n_pairs = n_pairs
        self._lock = threading.Lock()  # guards _entries
        self._building = threading.Lock()  # one build at a time: concurrent misses wait, then hit
        # (path, endpoint) -> (state, columns, report or None until first asked)
        self._entries: dict[tuple[str, str | None], tuple[str, dict[str, Any], dict[str, Any] | None]] = {}

    def _entry(self, store: Store, endpoint: str | None, *, with_report: bool) -> tuple[dict, dict | None]:
        endpoint = endpoint or store.active_endpoint()
        key, state = (store.path, endpoint), report_state(store)
        with self._lock:
            entry = self._entries.get(key)
        if entry and entry[0] == state and (entry[2] is not None or not with_report):
            return entry[1], entry[2]
        with self._building:
            with self._lock:
                entry = self._entries.get(key)
            if not (entry and entry[0] == state):
                entry = (state, _columns(store, endpoint), None)
            if with_report and entry[2] is None:
                entry = (state, entry[1], _report(entry[1], endpoint, self.n_pairs))
            with self._lock:
                # a newer state replaces older entries of this database (other endpoints too)
                stale = [k for k, e in self._entries.items() if k[0] == store.path and e[0] != state]
                for k in stale:
                    del self._entries[k]
                self._entries[key] = entry
        return entry[1], entry[2]

    def report(self, store: Store, endpoint: str | None = None) -> dict[str, Any]:
        """:func:`compute`'s report of ``endpoint`` (default: the active one), cached."""
        return self._entry(store, endpoint, with_report=True)[1]  # type: ignore[return-value]

    def cell_ids(self, store: Store, *, given: str, predicted: str, split: str = "evaluation",
                 endpoint: str | None = None) -> list[int]:
        """:func:`cell_ids` from the cached columns."""
        return _cell(self._entry(store, endpoint, with_report=False)[0], given, predicted, split)

    def warm(self, path: str) -> threading.Thread:
        """Compute the active endpoint's report for the database at ``path`` in a daemon thread."""
        return warm_in_background(path, self.report, name="hl-model-report")
