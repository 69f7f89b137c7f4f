"""The whole hl-debug pipeline, in order, each step skipped when its inputs are unchanged.

``ingest`` -> ``embed`` -> ``predict`` -> ``analyze`` -> ``signals`` -> ``web`` (the map's
data for the web app, kept in the database). Recorded API answers, when given, are imported
right after ingest.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hl_debug.memory import release
from hl_debug.models.map import approx_threshold
from hl_debug.neighbors import KnnMemo
from hl_debug.steps.analyze import analyze_step
from hl_debug.steps.embed import embed_step
from hl_debug.steps.ingest import ingest
from hl_debug.steps.predict import import_predictions, predict_step
from hl_debug.steps.signals import signals_step
from hl_debug.steps.web import web_step
from hl_debug.storage import Store

log = logging.getLogger(__name__)

Step = Callable[[Store, dict[str, Any]], dict[str, Any]]


def steps() -> tuple[tuple[str, Step], ...]:
    """The pipeline's steps after ingest, in order; each takes ``(store, options)`` and returns counts."""
    return (("embed", embed_step), ("predict", predict_step), ("analyze", analyze_step),
            ("signals", signals_step), ("web", web_step))


def _import_recorded(store: Store, path: str | Path) -> dict[str, Any]:
    """Import a file of recorded API answers, unless this exact file was imported already."""
    import hashlib

    t0 = time.perf_counter()
    digest = hashlib.sha1(Path(path).read_bytes()).hexdigest()
    key = f"imported:{Path(path).name}"
    if store.get_meta(key) == digest:
        counts: dict[str, Any] = {"skipped": True}
    else:
        counts = import_predictions(store, path)
        store.set_meta(key, digest)
    return {"step": "import", "seconds": round(time.perf_counter() - t0, 2), **counts}


def run_pipeline(store: Store, export: str | Path, **options: Any) -> list[dict[str, Any]]:
    """Run every step on ``export``; returns one summary dict per step.

    Each summary has ``step``, ``seconds`` and the step's own counts (``skipped`` True
    when the step found its inputs unchanged). ``options`` go to every step; with
    ``recorded_predictions=PATH`` recorded API answers are imported after ingest (the
    signals step then uses them as the API's evidence).
    """
    summaries = []
    # one exact kNN per run: the analyze step computes it, the signals step reads it back
    options.setdefault("knn_memo", KnnMemo(approx_above=approx_threshold()))  # approximate above HL_APPROX_ABOVE
    t0 = time.perf_counter()
    counts = ingest(store, export)
    summaries.append({"step": "ingest", "seconds": round(time.perf_counter() - t0, 2), **counts})
    recorded = options.get("recorded_predictions")
    if recorded:
        summaries.append(_import_recorded(store, recorded))
    for name, step in steps():
        t0 = time.perf_counter()
        log.info("step %s", name)
        result = step(store, options) or {}
        release()  # what the step freed goes back to the OS before the next one allocates
        summaries.append({"step": name, "seconds": round(time.perf_counter() - t0, 2), **result})
    return summaries
