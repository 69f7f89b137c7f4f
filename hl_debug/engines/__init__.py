"""Where the per-row heavy work runs: in this process (``local``, the default) or as Ray Data jobs (``ray``).

One small protocol, :class:`Engine`: ``encode`` turns texts into vectors and ``predict_proba``
scores vectors with a fitted model, both yielding results in bounded batches, in input order
(``parallel`` is the context in which scikit-learn's joblib work — the out-of-fold folds —
runs on the engine),
so the step that calls them writes each batch through the store as it arrives (a killed job
re-does only what is missing, as the embed step always did). The engine never sees the store.
``local`` is the loop the steps always ran; ``ray`` (:mod:`hl_debug.engines.ray_engine`, the
optional ``hl-debug[ray]`` extra, imported only when chosen) runs the same encoder or model
in Ray actors that load it once — on an existing cluster (``HL_RAY_ADDRESS``) or on a small
local Ray started on demand. Both give the same vectors and probabilities (``tests/test_engines.py``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Protocol

import numpy as np

from hl_debug.errors import ConfigError
from hl_debug.settings import resolve

ENGINES = ("local", "ray")


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

    def parallel(self) -> AbstractContextManager[Any]:
        """A context in which scikit-learn's joblib-parallel work (the out-of-fold folds of
        ``cross_val_predict``) runs on this engine; the results do not depend on it."""
        ...


class LocalEngine:
    """Everything in this process, one batch after the other (what the steps always did)."""

    name = "local"

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

    def parallel(self) -> AbstractContextManager[Any]:
        """Nothing changes: folds run one after the other in this process, as they always did."""
        return nullcontext()


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
