"""The web step: the map's data for the web app, built once per pipeline state and kept in
the database, so the first page after ``hl-debug serve`` does not wait for it (about 2-3 s
at 100k rows). The web app reads it back (``webapp/points.py``) and only adds the reviews."""

from __future__ import annotations

import logging
from typing import Any

from hl_debug import mapdata
from hl_debug.signals.registry import evidence
from hl_debug.storage import POINTS, Store

log = logging.getLogger(__name__)


def web_step(store: Store, options: dict[str, Any]) -> dict[str, Any]:
    """Build and keep the pipeline's part of ``/api/points`` (:class:`mapdata.BasePayload`)
    and the gzipped ``/api/points/text`` body.

    Returns ``{"skipped": True}`` when nothing is mapped yet or the database already holds
    the payload of its current state, else ``{"skipped": False}``.
    """
    if not store.table_count(POINTS):
        return {"skipped": True}
    key = mapdata.data_key(store.map_state())
    has_base, has_texts = mapdata.stored_base(store, key) is not None, mapdata.stored_texts(store, key) is not None
    if has_base and has_texts:
        return {"skipped": True}
    if not has_base:
        base = mapdata.build_base(store, key, evidence())
        mapdata.keep_base(store, base)
        log.info("web: kept the map's data (%d points, %.1f MB)", len(base.ids), len(base.prefix) / 1e6)
    if not has_texts:
        zipped = mapdata.gzipped_texts(store, key)
        mapdata.keep_texts(store, key, zipped)
        log.info("web: kept the map's texts (%.1f MB gzipped)", len(zipped) / 1e6)
    return {"skipped": False}
