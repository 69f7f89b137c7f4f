"""The GPU path of the map: cuML's UMAP and HDBSCAN behind the analyzer's interfaces, when cuML is importable.

RAPIDS cuML implements both estimators on NVIDIA GPUs with the scikit-learn API the analyzer
already uses: ``cuml.manifold.UMAP`` takes the same precomputed kNN graph (``precomputed_knn``),
``cuml.cluster.HDBSCAN`` the same size and selection parameters, keeps ``prediction_data`` for
``cuml.cluster.hdbscan.approximate_predict`` and exposes the condensed tree the cluster rules
cut. :class:`~hl_debug.models.map.MapAnalyzer` with ``device="auto"`` (the default) uses them
when ``import cuml`` works and the CPU libraries otherwise, so nothing changes on a machine
without cuML; ``device="cpu"`` forces the CPU, ``device="gpu"`` fails clearly without cuML.
A GPU run is recorded with the analyze step's parameters (its layout is not bit-identical to
umap-learn's). See ``docs/SCALE.md``.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from hl_debug.errors import ConfigError

DEVICES = ("auto", "cpu", "gpu")


def cuml_available() -> bool:
    """Whether ``cuml`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec("cuml") is not None
    except (ImportError, ValueError):
        return False


def resolve_device(device: str) -> str:
    """``"gpu"`` or ``"cpu"`` for the analyzer's ``device`` parameter."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    if device == "gpu" and not cuml_available():
        raise ConfigError("device='gpu' needs RAPIDS cuML", hint="install cuML (docs/SCALE.md) or use device='auto'")
    return "gpu" if device == "gpu" or (device == "auto" and cuml_available()) else "cpu"


def umap_model(*, n_components: int, n_neighbors: int, min_dist: float, metric: str, random_state: int | None,
               n_epochs: int | None, precomputed_knn: tuple, init: str) -> Any:
    """cuML's UMAP with the analyzer's parameters, on the same precomputed kNN graph."""
    from cuml.manifold import UMAP

    return UMAP(n_components=n_components, n_neighbors=n_neighbors, min_dist=min_dist, metric=metric,
                random_state=random_state, n_epochs=n_epochs, init=init,
                precomputed_knn=tuple(precomputed_knn[:2]))


def hdbscan_model(*, min_cluster_size: int, min_samples: int, cluster_selection_method: str,
                  cluster_selection_epsilon: float, prediction_data: bool) -> Any:
    """cuML's HDBSCAN with the analyzer's parameters."""
    from cuml.cluster import HDBSCAN

    return HDBSCAN(min_cluster_size=min_cluster_size, min_samples=min_samples,
                   cluster_selection_method=cluster_selection_method,
                   cluster_selection_epsilon=cluster_selection_epsilon, prediction_data=prediction_data)


def is_cuml(model: Any) -> bool:
    return type(model).__module__.split(".")[0] == "cuml"


def approximate_predict(model: Any, points: Any) -> tuple[Any, Any]:
    """``cuml.cluster.hdbscan.approximate_predict`` (labels, strengths) for a cuML HDBSCAN."""
    from cuml.cluster.hdbscan import approximate_predict as predict

    return predict(model, points)
