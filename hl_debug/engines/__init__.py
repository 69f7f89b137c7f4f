"""Where the per-row heavy work runs: in this process (``local``, the default) or as Ray Data jobs (``ray``).

One small protocol, :class:`Engine`: ``encode`` turns texts into vectors and ``predict_proba``
scores vectors with a fitted model, both yielding results in bounded batches, in input order
(``parallel`` is the context in which scikit-learn's joblib work — the out-of-fold folds —
runs on the engine: on ``local``, one thread per core while the data are small enough to
copy a fold per thread, :data:`FOLD_THREADS_MAX_BYTES`),
so the step that calls them writes each batch through the store as it arrives (a killed job
re-does only what is missing, as the embed step always did). The engine never sees the store.
``local`` is the loop the steps always ran; ``ray`` (:mod:`hl_debug.engines.ray_engine`, the
optional ``hl-debug[ray]`` extra, imported only when chosen) runs the same encoder or model
in Ray actors that load it once — on an existing cluster (``HL_RAY_ADDRESS``) or on a small
local Ray started on demand. Both give the same vectors and probabilities (``tests/test_engines.py``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Protocol

import numpy as np

from hl_debug.errors import ConfigError
from hl_debug.settings import resolve

ENGINES = ("local", "ray")

#: Above this many bytes of vectors the local engine's folds run one after the other: each
#: concurrent fold holds its own copy of its training rows (``X[train]``), which at a million
#: rows is ~1.1 GB more per thread, against the 8 GB target of docs/SCALE.md. Below it (about
#: 350k rows of 384 float32 dimensions) a thread per core fits the folds side by side.
FOLD_THREADS_MAX_BYTES = 512 * 2**20


class Engine(Protocol):
    """Runs an encoder or a fitted model over many rows, in bounded batches, in order."""

    name: str

    def encode(self, encoder: Any, texts: Sequence[str], *, batch_size: int = 512
               ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(positions in texts, vectors)`` batch by batch (``encoder.transform(texts)`` per batch)."""
        ...

    def predict_proba(self, model: Any, X: np.ndarray, *, batch_size: int = 4096
                      ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(row positions, model.predict_proba(X[rows]))`` batch by batch."""
        ...

    def parallel(self, n_bytes: int | None = None) -> AbstractContextManager[Any]:
        """A context in which scikit-learn's joblib-parallel work (the out-of-fold folds of
        ``cross_val_predict``) runs on this engine; the results do not depend on it.
        ``n_bytes``: the size of the data the folds copy (the vectors), where the engine
        weighs memory against parallelism."""
        ...


class LocalEngine:
    """Everything in this process, one batch after the other (what the steps always did);
    the out-of-fold folds on up to ``fold_threads`` threads (None: one per core, at most
    the 5 folds), for data of at most ``fold_threads_max_bytes``."""

    name = "local"

    def __init__(self, *, fold_threads: int | None = None,
                 fold_threads_max_bytes: int = FOLD_THREADS_MAX_BYTES) -> None:
        if fold_threads is not None and int(fold_threads) < 1:
            raise ValueError(f"fold_threads must be a positive integer or None, got {fold_threads!r}")
        self.fold_threads = int(fold_threads) if fold_threads is not None else min(5, os.cpu_count() or 1)
        self.fold_threads_max_bytes = int(fold_threads_max_bytes)

    def encode(self, encoder: Any, texts: Sequence[str], *, batch_size: int = 512
               ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for start in range(0, len(texts), batch_size):
            rows = np.arange(start, min(len(texts), start + batch_size))
            yield rows, np.asarray(encoder.transform([texts[int(i)] for i in rows]))

    def predict_proba(self, model: Any, X: np.ndarray, *, batch_size: int = 4096
                      ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for start in range(0, len(X), batch_size):
            rows = np.arange(start, min(len(X), start + batch_size))
            yield rows, np.asarray(model.predict_proba(X[rows]))

    def parallel(self, n_bytes: int | None = None) -> AbstractContextManager[Any]:
        """joblib's threading backend with :attr:`fold_threads` threads: each fold is fitted
        by its own thread, in this process, on the same arrays (no copy of ``X`` to workers;
        NumPy's and SciPy's products release the GIL, and the caller's one-BLAS-thread limit
        holds for every thread). The folds, their seeds and the results are scikit-learn's,
        unchanged. One thread, or data above :attr:`fold_threads_max_bytes` (``n_bytes``;
        None: unknown, taken as small): the folds one after the other, as before."""
        if self.fold_threads < 2 or (n_bytes is not None and n_bytes > self.fold_threads_max_bytes):
            return nullcontext()
        import joblib

        return joblib.parallel_backend("threading", n_jobs=self.fold_threads)


def as_engine(engine: Engine | str | None, *, address: str | None = None) -> Engine:
    """``engine`` itself when it is an :class:`Engine` object, else :func:`get_engine` of that
    name (None: ``HL_ENGINE``) — what a step accepts as its ``engine`` option."""
    if engine is not None and not isinstance(engine, str):
        return engine
    return get_engine(engine, address=address)


def get_engine(name: str | None = None, *, address: str | None = None, **kwargs: Any) -> Engine:
    """The engine called ``name`` (None: ``HL_ENGINE``, else ``local``).

    ``address`` (None: ``HL_RAY_ADDRESS``) and ``kwargs`` go to
    :class:`~hl_debug.engines.ray_engine.RayEngine`.
    """
    name = resolve("engine", name)
    if name not in ENGINES:
        raise ConfigError(f"unknown engine {name!r}", hint=f"valid: {', '.join(ENGINES)} (--engine / HL_ENGINE)")
    if name == "local":
        return LocalEngine()
    from hl_debug.engines.ray_engine import RayEngine

    return RayEngine(address=resolve("ray_address", address), **kwargs)
