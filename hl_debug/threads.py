"""Thread limits for the BLAS/OpenMP pools under scikit-learn and NumPy.

Logistic regressions on a few hundred features (the local model, the out-of-fold
classifier of the label-issue detector) do many small matrix products; with more than one
thread per product the extra threads mostly spin-wait, and on a shared 2-core machine that
made them 10-20x slower than one thread (benchmarks/RESULTS.md, "Predict step (session 2)"
and "Signals"). Large products (the exact kNN's ``X @ X.T`` blocks) do gain from threads, so
the limit is applied around the small-product work only.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from typing import Any


@functools.lru_cache(maxsize=1)
def _controller_for(n_modules: int) -> Any:
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _controller() -> Any:
    """The process's thread pools. Finding them costs ~20 ms, too much per request of
    ``hl-debug serve-model``, so they are found once per set of imported modules: an import
    can load a new native library with its own pool (usearch brings an OpenMP runtime), and
    a controller found before it would leave that pool unlimited."""
    return _controller_for(len(sys.modules))


def limit_threads(n_threads: int | None) -> contextlib.AbstractContextManager:
    """Context limiting every BLAS/OpenMP pool to ``n_threads`` (None: leave them alone)."""
    if n_threads is None:
        return contextlib.nullcontext()
    if int(n_threads) < 1:
        raise ValueError(f"n_threads must be a positive integer or None, got {n_threads!r}")
    return _controller().limit(limits=int(n_threads))
