"""UMAP's import, numba's on-disk cache of its compiled functions, and the quiet ``fit_transform`` the
analyzer's second process runs (moved from :mod:`hl_debug.models.map`, which re-exports them)."""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["UMAP_JIT_FUNCTIONS", "WORKER_CODE", "enable_jit_cache", "import_umap"]


# UMAP's numba functions that are compiled on every fit in a fresh process (umap-learn does
# not mark them ``cache=True``): the fuzzy-set construction and the epoch of the layout
# optimisation. Compiling them took ~9 of the ~20 s analyze spent fitting the bundled export.
UMAP_JIT_FUNCTIONS = (("umap.umap_", "smooth_knn_dist"), ("umap.umap_", "compute_membership_strengths"),
                      ("umap.layouts", "_nb_optimize_layout_euclidean_single_epoch"))


def import_umap() -> Any:
    """``import umap`` without its ImportWarning about the optional TensorFlow (ParametricUMAP),
    with numba's on-disk cache switched on for :data:`UMAP_JIT_FUNCTIONS`."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Tensorflow not installed", category=ImportWarning)
        import umap
    enable_jit_cache()
    return umap


def enable_jit_cache() -> list[str]:
    """Let numba cache UMAP's compiled functions on disk, so only the first process compiles them.

    numba keeps the machine code beside the package (``__pycache__``) or, where that is
    not writable, in the user's cache (``NUMBA_CACHE_DIR`` overrides both) and recompiles
    when umap-learn's source, numba or the CPU changes. The compiled code is the same as a
    fresh compilation's, so results do not change. Functions that are missing (another
    umap-learn version) or cannot be cached are skipped.

    Returns
    -------
    list of str
        The functions whose cache was switched on by this call.
    """
    import importlib

    enabled = []
    for module_name, name in UMAP_JIT_FUNCTIONS:
        func = getattr(importlib.import_module(module_name), name, None)
        cache = getattr(func, "_cache", None)
        if func is None or not hasattr(func, "enable_caching") or type(cache).__name__ != "NullCache":
            continue
        try:
            func.enable_caching()
        except RuntimeError as exc:  # no writable cache location
            log.debug("numba cannot cache %s.%s: %s", module_name, name, exc)
            continue
        enabled.append(f"{module_name}.{name}")
    return enabled


def _fit_transform(model: Any, X: np.ndarray) -> np.ndarray:
    """``model.fit_transform(X)`` quietly (also the worker process of :meth:`MapAnalyzer.fit`)."""
    if type(model).__module__.startswith("umap."):
        import_umap()  # in a fresh worker: switch the JIT cache on before the first compilation
    with warnings.catch_warnings():
        # We never call UMAP.transform on new data, so the missing search index is fine.
        warnings.filterwarnings("ignore", message=r"precomputed_knn\[2\]", category=UserWarning)
        return np.asarray(model.fit_transform(X), dtype=np.float64)


# The worker of MapAnalyzer._fit_concurrently: fit the pickled model, save the result.
WORKER_CODE = "import sys; from hl_debug.models.umap_jit import _fit_in_folder; _fit_in_folder(sys.argv[1])"


def _fit_in_folder(folder: str) -> None:
    """Worker-process side of :meth:`MapAnalyzer._fit_concurrently`: ``job.pkl`` -> ``embedding.npy``."""
    import pickle
    from pathlib import Path

    with open(Path(folder) / "job.pkl", "rb") as f:
        model, X = pickle.load(f)
    np.save(Path(folder) / "embedding.npy", _fit_transform(model, X))
