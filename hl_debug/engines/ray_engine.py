"""The Ray engine: the encoder or model in Ray actors that load it once; results back in bounded batches.

``encode`` is a Ray Data job: ``from_items`` of the texts (already sorted by length by the
embed step, so with ``preserve_order`` each batch holds texts of similar length — padding is
not wasted), ``map_batches`` with an actor class (the encoder is built once per actor and kept),
``iter_batches`` back to the driver, which writes each batch through the store. Ray is imported
here only, when this engine is chosen (``pip install 'hl-debug[ray]'``).

Connects to ``address`` (``HL_RAY_ADDRESS``, e.g. ``ray://head:10001`` or ``auto``) when given;
else starts a small local Ray once per process: ``num_cpus`` CPUs (default 2), no dashboard, a
small object store.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from hl_debug.errors import ConfigError

log = logging.getLogger(__name__)

#: Object store of a Ray started on demand, bytes (results stream back batch by batch).
LOCAL_OBJECT_STORE = 200 * 1024 * 1024


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - the extra is installed in CI
        raise ConfigError("the ray engine needs Ray", hint="pip install 'hl-debug[ray]', or use --engine local") from exc
    return ray


class EncoderActor:
    """A Ray Data actor: the encoder is unpickled (and loads its model) once, then encodes batches."""

    def __init__(self, encoder: Any) -> None:
        self.encoder = encoder

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        vectors = np.asarray(self.encoder.transform([str(t) for t in batch["text"]]), dtype=np.float32)
        return {"row": batch["row"], "vector": vectors}


class ModelActor:
    """A Ray Data actor scoring vectors with a fitted model (``predict_proba``)."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"row": batch["row"], "proba": np.asarray(self.model.predict_proba(np.stack(list(batch["x"]))))}


class RayEngine:
    """Ray Data jobs (see the module docstring).

    Parameters
    ----------
    address : str or None
        An existing cluster; None starts a local Ray on demand.
    num_cpus : int
        CPUs of a Ray started on demand.
    concurrency : int or None
        Actors per job (None: one per CPU of the Ray cluster).
    """

    name = "ray"

    def __init__(self, address: str | None = None, *, num_cpus: int = 2, concurrency: int | None = None) -> None:
        self.address = address
        self.num_cpus = num_cpus
        self.concurrency = concurrency

    def start(self) -> Any:
        """Connect to (or start) Ray once per process; returns the ``ray`` module."""
        with _quiet():
            return self._start()

    def _start(self) -> Any:
        ray = _ray()
        if not ray.is_initialized():
            if self.address:
                log.info("connecting to the Ray cluster at %s", self.address)
                ray.init(address=self.address, log_to_driver=False)
            else:
                log.info("starting a local Ray (%d CPUs)", self.num_cpus)
                ray.init(num_cpus=self.num_cpus, include_dashboard=False, log_to_driver=False,
                         object_store_memory=LOCAL_OBJECT_STORE, configure_logging=False)
            ray.data.DataContext.get_current().enable_progress_bars = False
        return ray

    def _actors(self, ray: Any) -> int:
        if self.concurrency:
            return self.concurrency
        return max(1, int(ray.cluster_resources().get("CPU", self.num_cpus)))

    def _run(self, items: list[dict], actor: type, payload: Any, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
        ray = self.start()
        with _quiet():  # Ray Data's own DeprecationWarnings about its settings
            ctx = ray.data.DataContext.get_current()
            ctx.execution_options.preserve_order = True  # length-sorted input stays length-bucketed, in order
            ds = ray.data.from_items(items).map_batches(
                actor, fn_constructor_args=(payload,), concurrency=self._actors(ray), batch_size=batch_size,
                batch_format="numpy", num_cpus=1)
            batches = iter(ds.iter_batches(batch_size=batch_size, batch_format="numpy"))
        while True:
            with _quiet():
                batch = next(batches, None)
            if batch is None:
                return
            yield batch

    def parallel(self, n_bytes: int | None = None) -> Any:
        """joblib's Ray backend (``ray.util.joblib``) for the context: each
        ``cross_val_predict`` fold is a Ray task (``n_jobs=-1``: one per CPU of the cluster);
        the folds, their seeds and the results are scikit-learn's, unchanged. (``n_bytes``
        does not change it: each task's copy lives in its worker.)"""
        import joblib

        self.start()
        with _quiet():
            from ray.util.joblib import register_ray

            register_ray()
        return joblib.parallel_backend("ray", n_jobs=-1)

    def encode(self, encoder: Any, texts: Sequence[str], *, batch_size: int = 512
               ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        if not len(texts):
            return
        items = [{"row": i, "text": t} for i, t in enumerate(texts)]
        for batch in self._run(items, EncoderActor, encoder, batch_size):
            yield np.asarray(batch["row"], dtype=np.int64), np.asarray(batch["vector"], dtype=np.float32)

    def predict_proba(self, model: Any, X: np.ndarray, *, batch_size: int = 4096
                      ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        if not len(X):
            return
        items = [{"row": i, "x": x} for i, x in enumerate(np.asarray(X))]
        for batch in self._run(items, ModelActor, model, batch_size):
            yield np.asarray(batch["row"], dtype=np.int64), np.asarray(batch["proba"])
