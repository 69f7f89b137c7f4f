"""Where answers come from, behind one protocol.

An :class:`AnswerSource` has an ``identity`` (the cache key of its answers, never a secret),
the ``parameters`` recorded with the run, live ``stats`` and :meth:`~AnswerSource.answers`,
which takes a :class:`Query` (the texts asked, and their vectors for sources that score
vectors) and yields one :class:`BatchOutcome` per batch as it completes, so the predict step
saves, counts and resumes every source alike. The sources: :mod:`~hl_debug.sources.remote`
(HTTP, the Humanloop contract), :mod:`~hl_debug.sources.local` (the local model, in-process,
on vectors) and :mod:`~hl_debug.sources.recorded` (a file of recorded answers).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

#: One text's answer: ``(label, confidence)`` most confident first; empty = no prediction.
Ranked = list[tuple[str, float]]


@dataclass
class BatchOutcome:
    """What happened to one batch: its texts, their answers (None when it failed), the error."""

    index: int
    texts: list[str]
    answers: list[Ranked] | None = None
    error: str | None = None
    attempts: int = 0


@dataclass
class ClientStats:
    """Requests (or chunks), retries and texts sent so far, and answers by HTTP status."""

    requests: int = 0
    retries: int = 0
    texts_sent: int = 0
    by_status: dict[str, int] = field(default_factory=dict)

    def count(self, status: str) -> None:
        self.by_status[status] = self.by_status.get(status, 0) + 1


@dataclass(frozen=True)
class Query:
    """The texts asked of a source, in order; ``vectors`` (shape ``(n, dim)``) are their
    sentence vectors, given to sources whose ``needs_vectors`` is true."""

    texts: list[str]
    vectors: np.ndarray | None = None


@runtime_checkable
class AnswerSource(Protocol):
    """A source of answers for the predict step."""

    @property
    def identity(self) -> str: ...

    @property
    def needs_vectors(self) -> bool: ...

    @property
    def parameters(self) -> dict[str, Any]: ...

    @property
    def stats(self) -> ClientStats: ...

    def answers(self, query: Query) -> Iterator[BatchOutcome]: ...
