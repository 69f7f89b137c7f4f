"""The GPU path: cuML's UMAP and HDBSCAN behind the analyzer's interfaces when cuML is importable.

cuML is absent on CI machines: the real-GPU test skips cleanly; the switch itself is tested
with a stand-in ``cuml`` package that records what the analyzer built and delegates to the
CPU libraries.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from hl_debug.errors import ConfigError
from hl_debug.models import gpu
from hl_debug.models.map import MapAnalyzer


def _blobs(n=600):
    X, y = make_blobs(n_samples=n, centers=4, n_features=12, random_state=1)
    return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32), [f"i{v}" for v in y]


@pytest.fixture
def fake_cuml(monkeypatch):
    import hdbscan
    from hdbscan.prediction import approximate_predict

    from hl_debug.models.umap_jit import import_umap

    umap = import_umap()

    built = []

    class FakeUMAP(umap.UMAP):
        pass

    class FakeHDBSCAN(hdbscan.HDBSCAN):
        pass

    def UMAP(**kwargs):  # noqa: N802 - cuML's class name
        built.append(("UMAP", dict(kwargs)))
        knn = kwargs.pop("precomputed_knn")
        return FakeUMAP(**kwargs, precomputed_knn=(*knn, None), n_jobs=1)

    def HDBSCAN(**kwargs):  # noqa: N802
        built.append(("HDBSCAN", dict(kwargs)))
        return FakeHDBSCAN(**kwargs)

    def predict(model, points):
        built.append(("approximate_predict", len(points)))
        return approximate_predict(model, points)

    for cls in (FakeUMAP, FakeHDBSCAN):
        cls.__module__ = "cuml.fake"
    modules = {"cuml": types.ModuleType("cuml"), "cuml.manifold": types.ModuleType("cuml.manifold"),
               "cuml.cluster": types.ModuleType("cuml.cluster"),
               "cuml.cluster.hdbscan": types.ModuleType("cuml.cluster.hdbscan")}
    modules["cuml.manifold"].UMAP = UMAP
    modules["cuml.cluster"].HDBSCAN = HDBSCAN
    modules["cuml.cluster.hdbscan"].approximate_predict = predict
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(gpu, "cuml_available", lambda: True)
    return built


def test_without_cuml_auto_is_the_cpu_and_gpu_is_a_config_error(monkeypatch):
    monkeypatch.setattr(gpu, "cuml_available", lambda: False)
    assert gpu.resolve_device("auto") == "cpu" and gpu.resolve_device("cpu") == "cpu"
    with pytest.raises(ConfigError, match="cuML"):
        gpu.resolve_device("gpu")
    with pytest.raises(ValueError):
        gpu.resolve_device("tpu")
    assert MapAnalyzer().approx_params(100) == {}


def test_with_cuml_the_analyzer_builds_cumls_models(fake_cuml):
    X, y = _blobs()
    m = MapAnalyzer(n_epochs=30, n_jobs=2).fit(X, y)
    kinds = [k for k, _ in fake_cuml]
    assert kinds.count("UMAP") == 2 and "HDBSCAN" in kinds
    umap_kwargs = dict(fake_cuml)["UMAP"]
    assert umap_kwargs["random_state"] == 42 and len(umap_kwargs["precomputed_knn"]) == 2
    assert m.n_jobs_ == 1 and m.n_clusters_ >= 3  # GPU models stay in this process
    assert MapAnalyzer().approx_params(100) == {"device": "gpu"}  # recorded with the run
    assert gpu.resolve_device("cpu") == "cpu"


def test_with_cuml_the_sample_path_assigns_the_rest_with_cumls_approximate_predict(fake_cuml):
    X, y = _blobs(800)
    m = MapAnalyzer(n_epochs=30, approx_above=100, sample_size=400, cluster_sample=True).fit(X, y)
    assert ("approximate_predict", 800 - len(m.sample_)) in fake_cuml
    assert (m.labels_ >= 0).mean() > 0.8


@pytest.mark.skipif(not gpu.cuml_available(), reason="cuML is not installed (no GPU path here)")
def test_on_a_real_gpu_the_map_agrees_with_the_cpu():  # pragma: no cover - needs cuML and a GPU
    from sklearn.metrics import adjusted_rand_score

    X, y = _blobs(2000)
    cpu = MapAnalyzer(device="cpu").fit(X, y)
    on_gpu = MapAnalyzer(device="gpu").fit(X, y)
    assert adjusted_rand_score(cpu.labels_, on_gpu.labels_) > 0.9
