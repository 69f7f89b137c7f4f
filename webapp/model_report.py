"""The model report of one endpoint, read from the store: the numbers behind ``/report``
and ``/api/confusion``.

The metrics are :mod:`hl_debug.signals.report`'s (the same functions the Signals step
stores its report with); this module only reads their input arrays from the cached
predictions, so the page works with any endpoint in the store, and turns an unknown
split into a :class:`ConfigError` (a 400).
"""

from __future__ import annotations

from typing import Any

from hl_debug.errors import ConfigError
from hl_debug.signals.report import SPLITS, confusion_cell, model_report
from hl_debug.store import Store

__all__ = ["SPLITS", "cell_ids", "check_split", "compute"]


def check_split(split: str) -> str:
    """``split`` when it names a row selection of :data:`SPLITS`, else a ConfigError listing them."""
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    return split


def _columns(store: Store, endpoint: str | None) -> dict[str, list]:
    """One entry per utterance (by id): ids, texts, given, usage, predicted, confidence, entropy."""
    df = store.predictions_df(endpoint)
    return {"ids": df["id"].tolist(), "texts": df["text"].tolist(), "given": df["intent"].tolist(),
            "usage": df["usage"].tolist(), "predicted": df["label"].tolist(),
            "confidence": df["confidence"].to_numpy(float), "entropy": df["entropy"].to_numpy(float)}


def compute(store: Store, *, endpoint: str | None = None, n_pairs: int = 10) -> dict[str, Any]:
    """:func:`~hl_debug.signals.report.model_report` of ``endpoint`` (default: the active one)
    for every split of :data:`SPLITS`."""
    endpoint = endpoint or store.active_endpoint()
    return model_report(**_columns(store, endpoint), endpoint=endpoint or "", splits=SPLITS, n_pairs=n_pairs)


def cell_ids(store: Store, *, given: str, predicted: str, split: str = "evaluation",
             endpoint: str | None = None) -> list[int]:
    """Ids of annotated rows of ``split`` labelled ``given`` and predicted ``predicted``."""
    cols = _columns(store, endpoint)
    return confusion_cell(ids=cols["ids"], given=cols["given"], usage=cols["usage"], predicted=cols["predicted"],
                          given_label=given, predicted_label=predicted, split=check_split(split))
