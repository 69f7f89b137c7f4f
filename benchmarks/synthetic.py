"""Synthetic data for the benchmarks, made through the public API only.

A synthetic export file (the export format ``hl-debug ingest`` reads), a cheap deterministic
encoder (vectors clustered by topic, no model to load) and an answer source with random
labels (for the predict step), so a benchmark builds its database as a user would:
``ingest`` the file, then run the steps. Nothing here writes storage rows by hand.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

INTENTS = [f"intent_{k:02d}" for k in range(12)]
TOPICS = ["bills", "cards", "voice", "weather", "music"]


def synthetic_records(n: int, seed: int = 0) -> list[dict]:
    """``n`` export records: ~90% annotated, the splits mixed, texts distinct."""
    rng = random.Random(seed)
    records = []
    for i in range(n):
        annotated = rng.random() > 0.1
        text = f"utterance {i} about {rng.choice(TOPICS)} {rng.random():.6f}"
        intent = rng.choice(INTENTS) if annotated else ""
        records.append({"id": i, "project_id": 1, "complete": annotated, "score": 0.1,
                        "usage": rng.choice(["training", "validation", "testing"]) if annotated else None,
                        "data": json.dumps({"text": text, "intent": intent})})
    return records


def write_export(path: Path, n: int, seed: int = 0) -> Path:
    """Write :func:`synthetic_records` to ``path`` (``.json`` or ``.json.zip``); returns ``path``."""
    from benchmarks.make_scaled_export import write

    write(synthetic_records(n, seed), path)
    return path


def spread(items: list, n: int | None) -> list:
    """At most ``n`` of ``items`` spread evenly over them (every k-th), so a quick run keeps the
    export's mix of splits and intents; all of them when ``n`` is None."""
    if n is None or n >= len(items):
        return list(items)
    return items[:: max(1, len(items) // n)][:n]


def export_subset(export: Path, n: int | None, folder: Path) -> Path:
    """``export`` itself, or a copy of :func:`spread` ``n`` of its records written into ``folder``."""
    from benchmarks.make_scaled_export import write
    from hl_debug.steps.ingest import read_export

    if n is None:
        return export
    out = folder / f"subset-{n}-{export.name}"
    write(spread(read_export(export), n), out)
    return out


class HashEncoder:
    """A stand-in sentence encoder: a unit vector per text from its hash, near its topic's centre.

    Deterministic and instant, so a benchmark that times what comes after embedding does
    not load the real model. ``dim`` dimensions; texts naming the same topic word cluster.
    """

    def __init__(self, dim: int = 32, noise: float = 0.6) -> None:
        self.dim, self.noise = dim, noise
        self.identity = f"bench-hash-{dim}"
        centres = np.random.default_rng(0).normal(size=(len(TOPICS) + 1, dim))
        self._centres = centres / np.linalg.norm(centres, axis=1, keepdims=True)

    def fit(self, X: Any = None, y: Any = None) -> HashEncoder:
        return self

    def transform(self, texts: list[str]) -> np.ndarray:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for k, text in enumerate(texts):
            topic = next((j for j, t in enumerate(TOPICS) if t in text), len(TOPICS))
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
            v = self._centres[topic] + self.noise * np.random.default_rng(seed).normal(size=self.dim) / np.sqrt(self.dim)
            out[k] = v / np.linalg.norm(v)
        return out


class RandomAnswers:
    """An :class:`~hl_debug.sources.base.AnswerSource` answering every text with random labels."""

    needs_vectors = False

    def __init__(self, identity: str = "bench", *, seed: int = 0, batch_size: int = 5000) -> None:
        from hl_debug.sources.base import ClientStats

        self._identity, self._rng, self.batch_size = identity, random.Random(seed), batch_size
        self._stats = ClientStats()

    @property
    def identity(self) -> str:
        return self._identity

    @property
    def parameters(self) -> dict[str, Any]:
        return {"source": "benchmark random answers"}

    @property
    def stats(self) -> Any:
        return self._stats

    def answers(self, query: Any) -> Iterator[Any]:
        from hl_debug.sources.base import BatchOutcome

        for index, start in enumerate(range(0, len(query.texts), self.batch_size)):
            texts = query.texts[start:start + self.batch_size]
            self._stats.requests += 1
            answers = [[(label, round(self._rng.random(), 4))
                        for label in self._rng.sample(INTENTS, 3)] for _ in texts]
            for a in answers:
                a.sort(key=lambda p: -p[1])
            yield BatchOutcome(index, texts, answers)


def ingested_store(path: Path, n: int, seed: int = 0, *, embed: bool = False) -> Any:
    """A :class:`~hl_debug.storage.Store` at ``path`` holding a synthetic export of ``n`` rows
    (written beside it and ingested), embedded with :class:`HashEncoder` when ``embed``."""
    from hl_debug.steps.embed import embed as embed_step
    from hl_debug.steps.ingest import ingest
    from hl_debug.storage import Store

    export = write_export(Path(str(path) + ".export.json"), n, seed)
    store = Store(path)
    ingest(store, export)
    if embed:
        embed_step(store, HashEncoder(), progress=False)
    return store
