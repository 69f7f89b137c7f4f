"""What every signal of one run reads: a :class:`SignalContext`, loaded once by the signals
step and handed to each signal's ``find``.

It carries everything explicitly — ids, texts, vectors, labels and classes, splits,
cluster ids, each endpoint's predictions, which endpoint is the label-issue evidence and
which is active, and the kNN graph of the vectors, computed once for the run (no
process-global cache) — so a signal never reads the store and a test builds a context
from plain arrays.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from hl_debug.neighbors import MIN_K, KnnMemo, knn, subset_knn


@dataclass(frozen=True)
class Predictions:
    """One endpoint's answers, one entry per row of the context (None/NaN: no answer)."""

    endpoint: str
    labels: list[str | None]
    confidence: np.ndarray  # (n,) float, NaN without an answer
    entropy: np.ndarray  # (n,) float, NaN without an answer


@dataclass
class SignalContext:
    """One run's inputs, one entry per utterance with a vector (row ``i`` everywhere).

    Parameters
    ----------
    ids : int array, shape (n,)
    texts : list of str, length n
    vectors : float32 array, shape (n, dim), L2-normalised
    labels : list of str or None, length n
        Given intents (None: unannotated).
    splits : list of str or None, length n
        ``training`` / ``validation`` / ``testing`` / None.
    cluster_ids : int array, shape (n,), or None
        The analyze step's clusters (-1: noise); None before it ran.
    predictions : {endpoint: Predictions}
    api_endpoint : str or None
        The endpoint whose answers are label-issue evidence.
    active_endpoint : str or None
        The endpoint being debugged (its labels are what the queue shows).
    graph : (indices, similarities), shape (n, width) each, or None
        The kNN graph of ``vectors`` (self excluded, most similar first); computed by
        :meth:`build_graph` when not given.
    results : {signal name: SignalResult}
        What the signals that ran before in this run found (the step fills it in registry
        order), so a later signal can build on an earlier one (e.g. a report that summarises
        the label issues, a queue that leaves out what an out-of-scope signal found).
    """

    ids: np.ndarray
    texts: list[str]
    vectors: np.ndarray
    labels: list[str | None]
    splits: list[str | None]
    cluster_ids: np.ndarray | None = None
    predictions: Mapping[str, Predictions] = field(default_factory=dict)
    api_endpoint: str | None = None
    active_endpoint: str | None = None
    graph: tuple[np.ndarray, np.ndarray] | None = None
    results: dict[str, Any] = field(default_factory=dict)
    knn_memo: KnnMemo | None = None

    def __post_init__(self) -> None:
        self.ids = np.asarray(self.ids, dtype=np.int64)
        n = len(self.ids)
        self.labels = [v if isinstance(v, str) else None for v in self.labels]
        self.splits = [v if isinstance(v, str) else None for v in self.splits]
        for name, value in (("texts", self.texts), ("vectors", self.vectors), ("labels", self.labels),
                            ("splits", self.splits)):
            if len(value) != n:
                raise ValueError(f"{name} has {len(value)} entries but ids has {n}; pass one per row")
        if self.cluster_ids is not None:
            self.cluster_ids = np.asarray(self.cluster_ids, dtype=np.int64)
            if self.cluster_ids.shape != (n,):
                raise ValueError(f"cluster_ids must have shape ({n},), got {self.cluster_ids.shape}")
        for p in self.predictions.values():
            if len(p.labels) != n or len(p.confidence) != n or len(p.entropy) != n:
                raise ValueError(f"predictions of {p.endpoint} need one entry per row ({n})")

    def __len__(self) -> int:
        return len(self.ids)

    # -- labels -----------------------------------------------------------------------

    @cached_property
    def classes(self) -> list[str]:
        """The annotated intents, sorted."""
        return sorted({v for v in self.labels if v is not None})

    @cached_property
    def y(self) -> np.ndarray:
        """Class index of each row's label in :attr:`classes`, -1 when unannotated; (n,)."""
        index = {c: i for i, c in enumerate(self.classes)}
        return np.array([index.get(v, -1) if v is not None else -1 for v in self.labels], dtype=np.int64)

    @cached_property
    def annotated(self) -> np.ndarray:
        """Bool (n,): rows with a given intent."""
        return np.array([v is not None for v in self.labels], dtype=bool)

    @cached_property
    def class_counts(self) -> np.ndarray:
        """Annotated rows per class, (n_classes,)."""
        return np.bincount(self.y[self.annotated], minlength=len(self.classes))

    @cached_property
    def scorable(self) -> np.ndarray:
        """Row numbers of the annotated rows a classifier can score out of fold (their
        intent has at least two rows), increasing."""
        ok = self.annotated & np.isin(self.y, np.flatnonzero(self.class_counts >= 2))
        return np.flatnonzero(ok)

    def predictions_of(self, endpoint: str | None) -> Predictions | None:
        return self.predictions.get(endpoint) if endpoint is not None else None

    # -- neighbours -------------------------------------------------------------------

    def build_graph(self, k: int = MIN_K) -> tuple[np.ndarray, np.ndarray]:
        """Compute the run's kNN graph (at least ``MIN_K`` wide) unless it has one that wide."""
        n = len(self)
        width = min(n - 1, max(k, MIN_K))
        if self.graph is None or self.graph[0].shape[1] < width:
            self.graph = knn(self.vectors, width, memo=self.knn_memo) if width >= 1 else (
                np.zeros((n, 0), dtype=np.int64), np.zeros((n, 0), dtype=np.float32))
        return self.graph

    @property
    def approximate_graph(self) -> bool:
        """Whether the run's kNN graph is (or will be) approximate: computed through a memo
        whose ``approx_above`` this many rows exceed (a graph given to the context counts as exact)."""
        return self.knn_memo is not None and self.knn_memo.approximate(len(self))

    def neighbors(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest other rows of every row: (indices, similarities), (n, k) each."""
        idx, sim = self.build_graph(k)
        return idx[:, :k], sim[:, :k]

    def subset_neighbors(self, rows: Sequence[int] | np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest neighbours of ``rows`` among ``rows`` (positions within
        ``rows``), read off the run's graph (exact for rows it lists too few of)."""
        return subset_knn(self.vectors, np.asarray(rows), k, full=self.build_graph(k))
