"""The whole hl-debug pipeline, in order, each step skipped when its inputs are unchanged.

``ingest`` -> ``predict`` -> ``embed`` -> ``analyze`` -> ``signals`` -> ``web`` (the map's
data for the web app, kept in the database). Steps that are not
installed yet are reported as such, so ``hl-debug run`` always runs what exists.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hl_debug.steps.ingest import ingest
from hl_debug.storage import Store

log = logging.getLogger(__name__)

Step = Callable[[Store, dict[str, Any]], dict[str, Any]]


# (step name, "module:function"); each function takes (store, options) and returns counts.
STEPS: tuple[tuple[str, str], ...] = (
    ("predict", "hl_debug.steps.predict:predict_step"),
    ("embed", "hl_debug.steps.embed:embed_step"),
    ("analyze", "hl_debug.steps.analyze:analyze_step"),
    ("signals", "hl_debug.steps.signals:signals_step"),
    ("web", "hl_debug.steps.web:web_step"),
)


def _steps() -> list[tuple[str, Step]]:
    """The pipeline's steps after ingest, in order; steps whose module is absent are left out."""
    import importlib

    steps: list[tuple[str, Step]] = []
    for name, target in STEPS:
        module, func = target.split(":")
        try:
            steps.append((name, getattr(importlib.import_module(module), func)))
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            log.info("step %s is not available yet (%s)", name, module)
        except AttributeError:  # the module exists but its step function is not written yet
            log.warning("step %s is not available yet (%s has no %s)", name, module, func)
    return steps


def _import_recorded(store: Store, path: str | Path) -> dict[str, Any]:
    """Import a file of recorded API answers, unless this exact file was imported already."""
    import hashlib

    from hl_debug.steps.predict import import_predictions

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
    t0 = time.perf_counter()
    counts = ingest(store, export)
    summaries.append({"step": "ingest", "seconds": round(time.perf_counter() - t0, 2), **counts})
    recorded = options.get("recorded_predictions")
    if recorded:
        summaries.append(_import_recorded(store, recorded))
    for name, step in _steps():
        t0 = time.perf_counter()
        log.info("step %s", name)
        result = step(store, options) or {}
        summaries.append({"step": name, "seconds": round(time.perf_counter() - t0, 2), **result})
    return summaries
