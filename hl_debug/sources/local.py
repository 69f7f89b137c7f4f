"""The local answer source: the local intent model scoring sentence vectors in this process.

Why the local model is not asked over HTTP: it used to be served on a loopback port and asked
20 texts per request like a remote API. At 100k texts that was 4,999 requests and 113 s of
JSON, sockets and thread hand-offs around a model that answers the same 100k rows from cached
vectors in a few seconds with no server (``benchmarks/RESULTS.md``, "Predict step (session
2)"). The answers are identical (:meth:`LocalIntentModel.top_k
<hl_debug.models.intent_model.LocalIntentModel.top_k>` either way; JSON round-trips floats
exactly), which a test checks against the model server.

:class:`EncodedModel` puts an encoder in front of the model for callers that have texts
only (the model server, :mod:`hl_debug.sources.model_server`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from hl_debug.sources.base import BatchOutcome, ClientStats, Query, Ranked


def local_identity(model_hash: str, n_best: int | None) -> str:
    """Cache identity of the local model: changes whenever the model is retrained differently."""
    return f"local:{model_hash[:12]}" + ("" if n_best is None else f"?n_best={n_best}")


class LocalSource:
    """Answers of a fitted local model on the vectors of the texts asked, in chunks.

    ``stats.requests`` counts chunks.

    Parameters
    ----------
    model:
        A fitted model with ``top_k(X, k)`` on vectors and ``metadata_["model_hash"]``
        (:class:`~hl_debug.models.intent_model.LocalIntentModel`).
    n_best:
        What the user asked for (None: every intent); names the cache identity.
    chunk_size:
        Texts scored (and saved) at once: large enough that per-chunk overhead vanishes,
        small enough that Ctrl-C loses little.
    engine:
        An :class:`~hl_debug.engines.Engine` that computes the probabilities (the ``ray``
        engine: a Ray Data job whose actors hold the model); None scores in this process.
        The answers are the same either way; the model ranks them here.
    """

    needs_vectors = True

    def __init__(self, model: Any, *, n_best: int | None = None, chunk_size: int = 2048,
                 engine: Any = None) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
        self.model = model
        self.n_best = n_best
        self.chunk_size = chunk_size
        self.engine = engine
        self._stats = ClientStats()

    @property
    def identity(self) -> str:
        return local_identity(self.model.metadata_["model_hash"], self.n_best)

    @property
    def n_ask(self) -> int:
        """Intents per answer."""
        return self.n_best if self.n_best is not None else len(self.model.classes_)

    @property
    def parameters(self) -> dict[str, Any]:
        return {"endpoint": self.identity, "source": "local",
                "mode": "in-process" if self.engine is None else f"engine:{self.engine.name}", "n_best": self.n_ask,
                "chunk_size": self.chunk_size}

    @property
    def stats(self) -> ClientStats:
        return self._stats

    def answers(self, query: Query) -> Iterator[BatchOutcome]:
        """Answers for ``query.texts`` (scored on ``query.vectors``) in chunks of ``chunk_size``, in order."""
        if query.vectors is None or len(query.vectors) != len(query.texts):
            raise ValueError("the local source scores vectors: the query needs one vector per text")
        texts, X = list(query.texts), query.vectors
        if self.engine is not None:
            for index, (rows, proba) in enumerate(self.engine.predict_proba(self.model, X, batch_size=self.chunk_size)):
                chunk = [texts[int(i)] for i in rows]
                self._stats.requests += 1
                self._stats.texts_sent += len(chunk)
                yield BatchOutcome(index=index, texts=chunk, answers=self.model.ranked(proba, self.n_ask), attempts=1)
            return
        for index, start in enumerate(range(0, len(texts), self.chunk_size)):
            chunk = texts[start:start + self.chunk_size]
            answers: list[Ranked] = self.model.top_k(X[start:start + self.chunk_size], self.n_ask)
            self._stats.requests += 1
            self._stats.texts_sent += len(chunk)
            yield BatchOutcome(index=index, texts=chunk, answers=answers, attempts=1)


class EncodedModel:
    """A fitted vector model behind an encoder: ``top_k(texts, k)`` encodes, then scores.

    Parameters
    ----------
    encoder:
        An :class:`~hl_debug.models.encoders.Encoder` (the one the model was trained on).
    model:
        A fitted :class:`~hl_debug.models.intent_model.LocalIntentModel`.
    """

    def __init__(self, encoder: Any, model: Any) -> None:
        self.encoder = encoder
        self.model = model

    @property
    def classes_(self) -> np.ndarray:
        return self.model.classes_

    @property
    def metadata_(self) -> dict[str, Any]:
        return getattr(self.model, "metadata_", {}) or {}

    def top_k(self, texts: Sequence[str], k: int | None = None) -> list[Ranked]:
        texts = list(texts)
        if not texts:
            return []
        return self.model.top_k(np.asarray(self.encoder.transform(texts), dtype=np.float32), k)
