"""The map analyzer: a 2-D map and HDBSCAN clusters of sentence vectors (arrays in, arrays out).

:class:`MapAnalyzer` is a scikit-learn style estimator: one cosine k-nearest-neighbour
graph of the sentence vectors (exact, :func:`knn_graph`) is built once and shared by two
UMAPs - a 2-D one for the map and a ~5-D one for clustering - then HDBSCAN clusters the
reduced vectors. Sub-models can be passed in (``map_model``, ``reduce_model``,
``cluster_model``) so tests swap in cheap stand-ins; None builds the defaults, whose HDBSCAN
parameters scale with the data (:mod:`hl_debug.models.cluster_rules`). Given the annotated
labels, no cluster keeps more than ``max_cluster_labels`` intents: epsilon merges that mix
them are split back, and any cluster still mixing them is cut down HDBSCAN's hierarchy.

Noise is kept honest: HDBSCAN's noise points keep ``cluster_id = -1``; ``nearest_cluster_`` says
which cluster each one is closest to (k-nearest clustered points in the reduced space), so nothing
is silently forced into a cluster. The step that reads and writes the store: :mod:`hl_debug.steps.analyze`.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from hl_debug.models import gpu
from hl_debug.models.cluster_rules import (
    NOISE,
    cut_mixed_clusters,
    default_cluster_selection_epsilon,
    default_min_cluster_size,
    default_min_samples,
    split_mixed_clusters,
)
from hl_debug.models.map_sample import SampleFitUMAP, approx_threshold, place_clusters, stratified_sample
from hl_debug.models.umap_jit import (  # noqa: F401 (re-exported)
    UMAP_JIT_FUNCTIONS,
    WORKER_CODE,
    _fit_in_folder,
    _fit_transform,
    enable_jit_cache,
    import_umap,
)
from hl_debug.neighbors import knn_graph
from hl_debug.settings import default

log = logging.getLogger(__name__)

SELECTION_METHODS = ("eom", "leaf")


# Rows from which the two seeded UMAPs run side by side (the map's in a second process):
# below it, starting that process costs more than it saves.
CONCURRENT_MIN_ROWS = 5000


class MapAnalyzer(BaseEstimator):
    """2-D map + clustering of sentence vectors (UMAP, UMAP, HDBSCAN).

    Parameters
    ----------
    n_neighbors : int
        UMAP neighbourhood size (self included); capped at ``n - 1`` for tiny data.
    n_components : int
        Dimensions of the clustering UMAP (HDBSCAN works poorly on 384-D vectors).
    map_min_dist, cluster_min_dist : float
        UMAP ``min_dist`` of the map (spread for readability) and of the clustering
        projection (0: pack dense regions tightly, which HDBSCAN likes).
    metric : str
        Metric of the input vectors' kNN graph.
    random_state : int or None
        Seed; None lets UMAP run in parallel but results then vary run to run.
    n_epochs : int or None
        UMAP optimisation epochs (None: UMAP's default). Small values make tests fast.
    min_cluster_size, min_samples : int or None
        HDBSCAN parameters; None scales them with the data (:func:`default_min_cluster_size`,
        :func:`default_min_samples`).
    cluster_selection_epsilon : float or None
        HDBSCAN's ``cluster_selection_epsilon`` (>= 0); None scales it with the data
        (:func:`default_cluster_selection_epsilon`: 0 below 2,500 rows).
    cluster_selection_method : {"eom", "leaf"}
        HDBSCAN's cluster selection.
    max_cluster_labels : int or None
        With labels passed to :meth:`fit`: a cluster in which more than this many annotated
        intents each hold over 10% of the annotated rows is replaced by the clusters HDBSCAN
        finds inside it without epsilon (:func:`~hl_debug.models.cluster_rules.split_mixed_clusters`),
        then by its parts down the condensed tree (:func:`~hl_debug.models.cluster_rules.cut_mixed_clusters`).
        None never splits or cuts.
    map_model, reduce_model, cluster_model : estimators or None
        Stand-ins for the 2-D UMAP, the clustering UMAP and HDBSCAN (each needs
        ``fit_transform`` / ``fit`` + ``labels_``). None builds the defaults.
    n_jobs : int or None
        2 fits the map's UMAP in a second process while the clustering UMAP runs here (a
        seeded UMAP is single-threaded; the results are identical to one after the other);
        1 fits them one after the other. None: 2 from :data:`CONCURRENT_MIN_ROWS` rows when
        the machine has more than one CPU. Does not change results, so it is not recorded
        with the run's parameters.
    approx_above : int or None
        Above this many rows the UMAPs and HDBSCAN are fitted on a stratified sample of
        ``sample_size`` rows and the rest placed (:mod:`hl_debug.models.map_sample`); None: the
        ``approx_above`` setting (``HL_APPROX_ABOVE``, 50,000 — far above the bundled export).
    sample_size : int
        Rows of that sample.
    cluster_sample : bool
        Above the threshold, fit HDBSCAN on the sample too and assign the rest with
        ``approximate_predict`` (default: cheapest, and its label issues agree best with the
        exact path's, docs/SCALE.md); False: HDBSCAN and the cluster rules run on every row's
        placed projection.
    device : {"auto", "cpu", "gpu"}
        "auto": cuML's UMAP and HDBSCAN when cuML is importable (:mod:`hl_debug.models.gpu`), else the CPU's.

    Attributes
    ----------
    embedding_ : array, shape (n, 2)
    reduced_ : array, shape (n, n_components)
    labels_ : int array, shape (n,)  (-1 = noise)
    probabilities_ : array, shape (n,)  HDBSCAN membership strength (NaN if unavailable)
    outlier_scores_ : array, shape (n,)  GLOSH outlier score (NaN if unavailable)
    nearest_cluster_ : int array, shape (n,)  own cluster, or for noise the closest one
    knn_indices_, knn_distances_ : arrays, shape (n, n_neighbors)  the shared graph
    n_clusters_ : int
    noise_share_ : float
    min_cluster_size_, min_samples_ : int  the values used
    n_jobs_ : int  UMAPs fitted at once
    cluster_selection_epsilon_ : float  the value used
    sample_ : int array or None  rows the models were fitted on (None: all)
    n_split_ : int  epsilon-merged clusters split back because they mixed intents
    cut_ : dict  ``n_cut``, ``n_parts``, ``n_cores``, ``n_noise`` of :func:`cut_mixed_clusters`
    """

    def __init__(self, *, n_neighbors: int = default("n_neighbors"), n_components: int = default("n_components"),
                 map_min_dist: float = default("map_min_dist"), cluster_min_dist: float = default("cluster_min_dist"),
                 metric: str = "cosine", random_state: int | None = default("random_state"),
                 n_epochs: int | None = default("n_epochs"), min_cluster_size: int | None = default("min_cluster_size"),
                 min_samples: int | None = default("min_samples"),
                 cluster_selection_method: str = default("cluster_selection_method"),
                 cluster_selection_epsilon: float | None = default("cluster_selection_epsilon"),
                 max_cluster_labels: int | None = default("max_cluster_labels"),
                 map_model: Any = None, reduce_model: Any = None, cluster_model: Any = None,
                 n_jobs: int | None = None, approx_above: int | None = None,
                 sample_size: int = default("map_sample_size"), cluster_sample: bool = True,
                 device: str = "auto") -> None:
        self.n_neighbors = n_neighbors
        self.n_components = n_components
        self.map_min_dist = map_min_dist
        self.cluster_min_dist = cluster_min_dist
        self.metric = metric
        self.random_state = random_state
        self.n_epochs = n_epochs
        self.min_cluster_size = min_cluster_size
        self.min_samples = min_samples
        self.cluster_selection_method = cluster_selection_method
        self.cluster_selection_epsilon = cluster_selection_epsilon
        self.max_cluster_labels = max_cluster_labels
        self.map_model = map_model
        self.reduce_model = reduce_model
        self.cluster_model = cluster_model
        self.n_jobs = n_jobs
        self.approx_above = approx_above
        self.sample_size = sample_size
        self.cluster_sample = cluster_sample
        self.device = device

    # -- validation -----------------------------------------------------------------

    def _validate(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2:
            raise ValueError(f"X must have shape (n, dim), got {X.shape}")
        if len(X) < 5:
            raise ValueError(f"need at least 5 rows to build a map, got {len(X)}")
        if not np.isfinite(X).all():
            bad = int(np.flatnonzero(~np.isfinite(X).all(axis=1))[0])
            raise ValueError(f"X has non-finite values (first in row {bad})")
        for name in ("n_neighbors", "n_components"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 2:
                raise ValueError(f"{name} must be an integer >= 2, got {value!r}")
        for name in ("min_cluster_size", "min_samples", "max_cluster_labels"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))
                                      or value < (2 if name == "min_cluster_size" else 1)):
                raise ValueError(f"{name} must be a positive integer (min_cluster_size >= 2) or None, got {value!r}")
        eps = self.cluster_selection_epsilon
        if eps is not None and (isinstance(eps, bool) or not isinstance(eps, (int, float, np.number))
                                or not 0 <= eps < math.inf):
            raise ValueError(f"cluster_selection_epsilon must be a finite number >= 0 or None, got {eps!r}")
        if isinstance(self.sample_size, bool) or not isinstance(self.sample_size, (int, np.integer)) \
                or self.sample_size < 10:
            raise ValueError(f"sample_size must be an integer >= 10, got {self.sample_size!r}")
        if self.n_jobs not in (None, 1, 2):
            raise ValueError(f"n_jobs must be 1, 2 or None, got {self.n_jobs!r}")
        if self.cluster_selection_method not in SELECTION_METHODS:
            raise ValueError(f"unknown cluster_selection_method {self.cluster_selection_method!r}; "
                             f"valid: {', '.join(SELECTION_METHODS)}")
        return X

    # -- sub-models -----------------------------------------------------------------

    def umap_model(self, n_components: int, min_dist: float, n_neighbors: int, knn: tuple) -> Any:
        """The default UMAP :meth:`fit` builds (unfitted), on the precomputed ``knn`` graph
        ``(indices, distances, None)``; public so a benchmark can time each stage alone."""
        common: dict[str, Any] = dict(n_components=n_components, n_neighbors=n_neighbors, min_dist=min_dist, metric=self.metric,
                      random_state=self.random_state, n_epochs=self.n_epochs, precomputed_knn=knn,
                      # tiny data: spectral init needs more rows than dimensions
                      init="spectral" if len(knn[0]) > n_components + 10 else "random")
        if gpu.resolve_device(self.device) == "gpu":
            return gpu.umap_model(**common)
        # a seed makes UMAP single-threaded anyway; saying so avoids its warning
        return import_umap().UMAP(**common, n_jobs=1 if self.random_state is not None else -1)

    def hdbscan_model(self, min_cluster_size: int, min_samples: int, epsilon: float,
                      prediction_data: bool = False) -> Any:
        """The default HDBSCAN :meth:`fit` builds (unfitted) for these parameters."""
        common: dict[str, Any] = dict(min_cluster_size=min_cluster_size, min_samples=min_samples, prediction_data=prediction_data,
                      cluster_selection_method=self.cluster_selection_method, cluster_selection_epsilon=epsilon)
        if gpu.resolve_device(self.device) == "gpu":
            return gpu.hdbscan_model(**common)
        import hdbscan

        return hdbscan.HDBSCAN(**common, core_dist_n_jobs=1)

    def approx_threshold(self) -> int:
        """Rows above which the models are fitted on a sample (:attr:`approx_above`, else the setting)."""
        return approx_threshold(self.approx_above)

    def approx_params(self, n: int) -> dict[str, Any]:
        """What the sample and GPU paths add to a run's recorded parameters for ``n`` rows ({}: neither)."""
        above = self.approx_threshold()
        out = ({"approx_above": above, "map_sample_size": self.sample_size, "cluster_sample": self.cluster_sample}
               if n > above and self.sample_size < n else {})
        return {**out, "device": "gpu"} if gpu.resolve_device(self.device) == "gpu" else out

    # -- fitting --------------------------------------------------------------------

    def fit(self, X: np.ndarray, y: Any = None, *, knn: tuple[np.ndarray, np.ndarray] | None = None) -> MapAnalyzer:
        """Fit the map and the clusters.

        Parameters
        ----------
        X : array, shape (n, dim)
            Sentence vectors (L2-normalised for cosine).
        y : sequence of str or None, shape (n,), optional
            Annotated intents (None or "" = unannotated). They never move a row; they only
            decide where the hierarchy is cut (``max_cluster_labels``).
        knn : (indices, distances), each shape (n, >= n_neighbors), optional
            A precomputed graph from :func:`knn_graph` (self first); built when None.
        """
        X = self._validate(X)
        n = len(X)
        if y is not None and len(y) != n:
            raise ValueError(f"y must have one label per row ({n}), got {len(y)}")
        k = min(self.n_neighbors, n - 1)
        if knn is None:
            knn = knn_graph(X, k, metric=self.metric)
        idx, dist = (np.asarray(a) for a in knn)
        if idx.shape[0] != n or idx.shape[1] < k or dist.shape != idx.shape:
            raise ValueError(f"knn must be two arrays of shape ({n}, >= {k}), got {idx.shape} and {dist.shape}")
        # UMAP prunes a wider graph only on large data, so hand it exactly k columns.
        self.knn_indices_, self.knn_distances_ = idx[:, :k], dist[:, :k].astype(np.float32)
        shared = (self.knn_indices_, self.knn_distances_, None)
        self.sample_ = None
        if n > self.approx_threshold() and self.sample_size < n:
            self.sample_ = stratified_sample(list(y) if y is not None else [None] * n, self.sample_size,
                                             seed=self.random_state)
            log.info("fitting the map on a stratified sample of %d of %d rows", len(self.sample_), n)
            k = min(k, len(self.sample_) - 1)
            shared = knn_graph(X[self.sample_], k, metric=self.metric) + (None,)
        sample = self.sample_ if self.sample_ is not None else np.arange(0)
        on_sample = self.sample_ is not None and self.cluster_sample
        fit_rows = self.sample_ if on_sample else slice(None)

        map_model = self.map_model if self.map_model is not None else self.umap_model(2, self.map_min_dist, k, shared)
        reduce_model = (self.reduce_model if self.reduce_model is not None
                        else self.umap_model(self.n_components, self.cluster_min_dist, k, shared))
        if self.sample_ is not None:  # fit on the sample, place the rest with UMAP's transform
            map_model = map_model if self.map_model is not None else SampleFitUMAP(map_model, self.sample_)
            reduce_model = reduce_model if self.reduce_model is not None else SampleFitUMAP(reduce_model, self.sample_)
        self.n_jobs_ = self.n_jobs or (2 if n >= CONCURRENT_MIN_ROWS and (os.cpu_count() or 1) > 1 else 1)
        if self.map_model is not None or gpu.resolve_device(self.device) == "gpu":
            self.n_jobs_ = 1  # a stand-in (or a GPU model) may not survive pickling into another process
        fitted = self._fit_concurrently(reduce_model, map_model, X) if self.n_jobs_ == 2 else None
        if fitted is not None:
            self.reduced_, self.embedding_ = fitted
        else:
            log.info("UMAP to %d-D for clustering (n=%d, k=%d)", self.n_components, n, k)
            self.reduced_ = _fit_transform(reduce_model, X)
            log.info("UMAP to 2-D for the map")
            self.embedding_ = _fit_transform(map_model, X)
        if self.embedding_.shape != (n, 2):
            raise ValueError(f"map_model must return shape ({n}, 2), got {self.embedding_.shape}")

        self.min_cluster_size_ = self.min_cluster_size or default_min_cluster_size(n)
        if on_sample and self.min_cluster_size is None:  # the same sub-topics, in sample rows
            self.min_cluster_size_ = max(5, round(self.min_cluster_size_ * len(sample) / n))
        self.min_samples_ = self.min_samples or default_min_samples(self.min_cluster_size_)
        self.cluster_selection_epsilon_ = float(self.cluster_selection_epsilon
                                                if self.cluster_selection_epsilon is not None
                                                else default_cluster_selection_epsilon(n))
        cluster_model = (self.cluster_model if self.cluster_model is not None
                         else self.hdbscan_model(self.min_cluster_size_, self.min_samples_, self.cluster_selection_epsilon_,
                                                 prediction_data=on_sample))
        log.info("HDBSCAN (min_cluster_size=%d, min_samples=%d, cluster_selection_epsilon=%g)",
                 self.min_cluster_size_, self.min_samples_, self.cluster_selection_epsilon_)
        reduced = self.reduced_[fit_rows]
        m = len(reduced)
        cluster_model.fit(reduced)
        self.cluster_model_ = cluster_model
        self.labels_ = np.asarray(cluster_model.labels_, dtype=np.int64)
        self.probabilities_ = np.asarray(getattr(cluster_model, "probabilities_", np.full(m, np.nan)), dtype=float)
        self.outlier_scores_ = np.asarray(getattr(cluster_model, "outlier_scores_", np.full(m, np.nan)), dtype=float)
        self.n_split_, self.cut_ = 0, {"n_cut": 0, "n_parts": 0, "n_cores": 0, "n_noise": 0}
        if y is not None and self.max_cluster_labels is not None and self.cluster_model is None:
            y_fit = [y[i] for i in sample] if on_sample else list(y)
            self._keep_intents_apart(y_fit, self.max_cluster_labels, reduced)
        if on_sample:
            self.labels_, self.probabilities_, self.outlier_scores_ = place_clusters(
                cluster_model, self.reduced_, sample, np.asarray(cluster_model.labels_, dtype=np.int64),
                self.labels_, self.probabilities_, self.outlier_scores_)
        self.n_clusters_ = int(len(set(self.labels_.tolist()) - {NOISE}))
        self.noise_share_ = float((self.labels_ == NOISE).mean())
        self.nearest_cluster_ = self._nearest_cluster()
        return self

    def _keep_intents_apart(self, y: list, max_labels: int, reduced: np.ndarray) -> None:
        """Split back the epsilon merges mixing over ``max_cluster_labels`` intents (a second HDBSCAN fit
        without epsilon, whose membership/outlier scores their rows take), then cut any cluster still
        mixing them down the condensed tree (:func:`cut_mixed_clusters`; rows made noise: membership 0)."""
        if self.cluster_selection_epsilon_ > 0:
            fine = self.hdbscan_model(self.min_cluster_size_, self.min_samples_, 0.0).fit(reduced)
            merged = self.labels_
            self.labels_, split = split_mixed_clusters(merged, fine.labels_, y, max_labels=max_labels)
            self.n_split_, moved = len(split), np.isin(merged, split)
            for name in ("probabilities_", "outlier_scores_"):
                getattr(self, name)[moved] = np.asarray(getattr(fine, name), dtype=float)[moved]
        before, tree = self.labels_, self.cluster_model_.condensed_tree_.to_numpy()
        self.labels_, self.cut_ = cut_mixed_clusters(before, tree, y, max_labels=max_labels,
                                                     min_size=self.min_cluster_size_)
        self.probabilities_[(self.labels_ == NOISE) & (before != NOISE)] = 0.0
        if self.n_split_ or self.cut_["n_cut"]:
            log.info("kept intents apart: %d epsilon merge(s) split, %d cluster(s) cut into %d (%d rows to noise)",
                     self.n_split_, self.cut_["n_cut"], self.cut_["n_parts"], self.cut_["n_noise"])

    def _fit_concurrently(self, reduce_model: Any, map_model: Any,
                          X: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """The map's UMAP in a worker process, the clustering UMAP here; returns ``(reduced,
        embedding)``, or None when the worker failed (then :meth:`fit` fits both here).

        The worker is a fresh interpreter (:data:`WORKER_CODE`) that reads the model and
        the vectors from a temporary file: unlike multiprocessing's "spawn" it never
        re-runs the caller's ``__main__`` (a script without an ``if __name__ ==
        "__main__"`` guard), and unlike "fork" it inherits no numba/OpenMP threads.
        """
        import pickle
        import subprocess
        import sys
        import tempfile
        from pathlib import Path

        log.info("UMAP to %d-D for clustering and to 2-D for the map, side by side (n=%d)", self.n_components, len(X))
        with tempfile.TemporaryDirectory(prefix="hl-debug-umap-") as tmp:
            folder = Path(tmp)
            with open(folder / "job.pkl", "wb") as f:
                pickle.dump((map_model, X), f, protocol=pickle.HIGHEST_PROTOCOL)
            package_root = str(Path(__file__).resolve().parents[2])  # the folder holding hl_debug/
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root,
                                                                             os.environ.get("PYTHONPATH")]))}
            with open(folder / "stderr.txt", "wb") as err:
                worker = subprocess.Popen([sys.executable, "-c", WORKER_CODE, tmp], env=env,
                                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
                try:
                    reduced = _fit_transform(reduce_model, X)
                finally:
                    returncode = worker.wait()
            if returncode == 0:
                return reduced, np.load(folder / "embedding.npy")
            tail = (folder / "stderr.txt").read_text(errors="replace").strip().splitlines()[-1:]
            log.warning("the map's UMAP failed in a second process (exit %s: %s); fitting it here",
                        returncode, tail[0] if tail else "no message")
            self.n_jobs_ = 1
            return None

    def fit_predict(self, X: np.ndarray, y: Any = None, **kwargs: Any) -> np.ndarray:
        return self.fit(X, y, **kwargs).labels_

    def _nearest_cluster(self) -> np.ndarray:
        """Own cluster for clustered points; for noise, the vote of the 5 nearest clustered points."""
        from sklearn.neighbors import KNeighborsClassifier

        out = self.labels_.copy()
        noise = out == NOISE
        if not noise.any() or noise.all():
            return out
        k = min(5, int((~noise).sum()))
        clf = KNeighborsClassifier(n_neighbors=k, weights="distance").fit(self.reduced_[~noise], out[~noise])
        out[noise] = clf.predict(self.reduced_[noise])
        return out
