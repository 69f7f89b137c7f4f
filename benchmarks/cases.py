"""Benchmark cases with held-out truth, as arrays: banking77, the bundled export, the grown export.

Every findings benchmark (clusters, label issues, queue, out-of-scope) reads its data
through here, so they all judge the same rows, the same planted truth and the same vectors:

* :func:`banking` — ``make_banking_export.build`` on ``../shared/data/banking77/``
  (77 fine-grained intents, 13k utterances): planted flips (uniform or confusable),
  unannotated rows and optionally whole intents held out as unknown;
* :func:`bundled` — the real export, optionally with planted uniform flips;
* :func:`grown` — the real export grown to ``rows`` by ``make_scaled_export.scale``.

``clean_base=True`` (or a :data:`benchmarks.clean_base.CHOICES` name) first drops the base's
suspected genuine label errors (:mod:`benchmarks.clean_base`: cleanlab on a TF-IDF and on a
sentence-vector logistic regression, their union by default), so the planted flips are the
truth; ``truth["clean_base"]`` records what was dropped.

Vectors come from the default sentence encoder (``hl_debug.models.encoders``), cached on
disk per encoder identity and text (``$HL_BENCH_CACHE``, default
``~/.cache/hl-debug/bench``), so a benchmark embeds each text once per machine.
:meth:`Case.context` builds the :class:`~hl_debug.signals.context.SignalContext` a signal's
``find`` runs on, so a benchmark measures the shipped signal, not a copy of it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

log = logging.getLogger("benchmarks.cases")

SHARED = ROOT.parent / "shared" / "data"
BUNDLED_EXPORT = SHARED / "chatbot_intent_classifier_data.json.zip"
RECORDED = SHARED / "recorded_predictions_project411.json"


@dataclass
class Case:
    """One benchmark data set, one entry per row everywhere.

    ``labels`` are the given intents (None: unannotated), ``true`` the real ones (None where
    unknown: the bundled export's unannotated rows), ``flipped`` marks rows whose given label
    was planted wrong, ``held_out`` rows of intents held out as unknown (unannotated).
    """

    name: str
    ids: np.ndarray
    texts: list[str]
    labels: list[str | None]
    splits: list[str | None]
    true: list[str | None]
    flipped: np.ndarray
    held_out: np.ndarray
    truth: dict[str, Any] = field(default_factory=dict)
    _vectors: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def vectors(self) -> np.ndarray:
        """L2-normalised float32 vectors of the default encoder, (n, dim), cached on disk."""
        if self._vectors is None:
            self._vectors = embed(self.texts)
        return self._vectors

    @property
    def annotated(self) -> np.ndarray:
        return np.array([v is not None for v in self.labels], dtype=bool)

    @property
    def intents(self) -> list[str]:
        """The given (in-scope) intents, sorted."""
        return sorted({v for v in self.labels if v is not None})

    def context(self, *, cluster_ids: np.ndarray | None = None, predictions: dict | None = None,
                api_endpoint: str | None = None, active_endpoint: str | None = None) -> Any:
        """The :class:`~hl_debug.signals.context.SignalContext` of this case."""
        from hl_debug.neighbors import KnnMemo
        from hl_debug.signals.context import SignalContext

        return SignalContext(ids=self.ids, texts=self.texts, vectors=self.vectors, labels=self.labels,
                             splits=self.splits, cluster_ids=cluster_ids, predictions=predictions or {},
                             api_endpoint=api_endpoint, active_endpoint=active_endpoint, knn_memo=KnnMemo())

    def records(self) -> list[dict]:
        """The case as platform export records (what ``hl-debug run`` ingests)."""
        return [{"id": int(i), "project_id": 1, "complete": lab is not None, "usage": split, "score": 0.0,
                 "data": json.dumps({"text": text, "intent": lab or ""})}
                for i, text, lab, split in zip(self.ids, self.texts, self.labels, self.splits)]


# -- vectors --------------------------------------------------------------------------


def cache_dir() -> Path:
    return Path(os.environ.get("HL_BENCH_CACHE") or Path.home() / ".cache" / "hl-debug" / "bench")


@lru_cache(maxsize=1)
def _encoder() -> Any:
    from hl_debug.models.encoders import SentenceEncoder

    return SentenceEncoder()


def embed(texts: list[str]) -> np.ndarray:
    """Vectors of ``texts`` from the default encoder, embedding only texts not cached yet.

    The default backend's vectors do not depend on the batch (``RESULTS.md``,
    "Determinism"), so a cached vector equals a fresh one.
    """
    enc = _encoder()
    path = cache_dir() / f"vectors-{hashlib.sha1(enc.identity.encode()).hexdigest()[:12]}.npz"
    keys = [hashlib.sha1(t.encode("utf-8")).hexdigest() for t in texts]
    known: dict[str, np.ndarray] = {}
    if path.exists():
        with np.load(path) as data:
            known = dict(zip(data["keys"].tolist(), data["vectors"]))
    missing = sorted({k: t for k, t in zip(keys, texts) if k not in known}.items())
    if missing:
        log.info("embedding %d texts not in %s", len(missing), path)
        vecs = enc.transform([t for _, t in missing])
        known.update(zip([k for k, _ in missing], vecs))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, keys=np.array(list(known)), vectors=np.stack(list(known.values())).astype(np.float32))
        os.replace(tmp, path)
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    return np.stack([known[k] for k in keys]).astype(np.float32)


# -- cases ----------------------------------------------------------------------------


def _from_records(name: str, records: list[dict], true_of: dict[int, str | None], flipped: set[int],
                  held_out: set[int], truth: dict[str, Any]) -> Case:
    ids, texts, labels, splits = [], [], [], []
    for rec in records:
        data = json.loads(rec["data"]) if isinstance(rec["data"], str) else rec["data"]
        ids.append(int(rec["id"]))
        texts.append(data["text"])
        labels.append(data.get("intent") or None if rec.get("complete", True) else None)
        splits.append(rec.get("usage") or None)
    idx = np.array(ids, dtype=np.int64)
    return Case(name=name, ids=idx, texts=texts, labels=labels, splits=splits,
                true=[true_of.get(i) for i in ids], flipped=np.isin(idx, list(flipped)),
                held_out=np.isin(idx, list(held_out)), truth=truth)


def banking(*, seed: int = 0, flip_rate: float = 0.05, flip_mode: str = "uniform", holdout_intents: int = 0,
            unannotated: float = 0.08, rows: int | None = None, clean_base: bool | str = False) -> Case:
    """banking77 as an export with planted truth (``make_banking_export.build``); ``clean_base``
    builds it from banking77 without its suspected genuine errors (:func:`banking_clean_base`).

    A case of fewer ``rows`` than banking77 with ``clean_base`` (the quick runs) draws its rows
    first (seeded) and cleans only those, so it never fits the two cleaning views on all 13,083
    rows (4.5 min of a 5-min quick label-noise run); it then has ``rows`` less the dropped ones.
    """
    from benchmarks.make_banking_export import build

    pool = _banking_utterances()
    if clean_base and rows is not None and rows < len(pool):
        pick = sorted(random.Random(f"banking-clean-subset:{seed}").sample(range(len(pool)), rows))
        utterances, info = clean_utterances([pool[i] for i in pick], _how(clean_base))
        rows = None
    else:
        utterances, info = banking_clean_base(_how(clean_base)) if clean_base else (pool, None)
    records, truth = build(utterances, seed=seed, rows=rows, flip_rate=flip_rate, flip_mode=flip_mode,
                           holdout_intents=holdout_intents, unannotated=unannotated,
                           similarity=_banking_similarity())
    if info is not None:
        truth["clean_base"] = info
    true_of = {int(k): v for k, v in truth["true_intent"].items()}
    held = {i for ids in truth["held_out"]["ids"].values() for i in ids}
    name = f"banking {flip_mode} {flip_rate:.0%}" + (f" +{holdout_intents} unknown" if holdout_intents else "")
    return _from_records(name, records, true_of, {f["id"] for f in truth["flips"]}, held, truth)


def _how(clean_base: bool | str) -> str:
    return "union" if clean_base is True else str(clean_base)


def _suspect_mask(texts: list[str], labels: list[str], how: str) -> tuple[np.ndarray, dict[str, Any]]:
    """The drop mask of :mod:`benchmarks.clean_base` over annotated rows, and what it records."""
    from benchmarks import clean_base as cb

    masks = cb.suspects(texts, labels, vectors=lambda: embed(texts), cache=cache_dir())
    drop = cb.combine(masks, how)
    info = {"method": "cleanlab find_label_issues (prune_by_noise_rate) on 5-fold out-of-fold probabilities of "
                      "logistic regressions on TF-IDF word+char n-grams ('tfidf') and on the default encoder's "
                      "vectors ('vectors')", "views": how, "annotated": len(texts),
            "suspects": {v: int(m.sum()) for v, m in masks.items()}, "both": int(np.logical_and(*masks.values()).sum()),
            "removed": int(drop.sum())}
    return drop, info


def clean_utterances(utterances: list[Any], how: str = "union") -> tuple[list[Any], dict[str, Any]]:
    """banking77 ``utterances`` without the suspected genuine errors, and the record of the
    removal (``removed_origins``: the dropped rows as ``train:<row>``/``test:<row>``)."""
    drop, info = _suspect_mask([u.text for u in utterances], [u.intent for u in utterances], how)
    info["removed_origins"] = [f"{u.origin}:{u.index}" for u, d in zip(utterances, drop) if d]
    return [u for u, d in zip(utterances, drop) if not d], info


@lru_cache(maxsize=4)
def banking_clean_base(how: str = "union") -> tuple[list[Any], dict[str, Any]]:
    """:func:`clean_utterances` of all of banking77 (cached per ``how``)."""
    return clean_utterances(_banking_utterances(), how)


@lru_cache(maxsize=1)
def _banking_utterances() -> Any:
    from benchmarks.make_banking_export import load_banking77

    return load_banking77()


@lru_cache(maxsize=1)
def _banking_similarity() -> Any:
    from benchmarks.make_banking_export import centroid_similarity

    return centroid_similarity(_banking_utterances())


def _plant_flips(records: list[dict], rate: float, seed: int) -> set[int]:
    """Flip ``rate`` of the annotated records' intents to a uniformly drawn other intent, in place."""
    rng = random.Random(seed)
    annotated = [i for i, r in enumerate(records) if r["complete"] and json.loads(r["data"]).get("intent")]
    intents = sorted({json.loads(records[i]["data"])["intent"] for i in annotated})
    flipped = set()
    for i in rng.sample(annotated, round(rate * len(annotated))):
        data = json.loads(records[i]["data"])
        data["intent"] = rng.choice([x for x in intents if x != data["intent"]])
        records[i] = {**records[i], "data": json.dumps(data)}
        flipped.add(int(records[i]["id"]))
    return flipped


def _bundled_records(clean_base: bool | str) -> tuple[list[dict], dict[str, Any] | None]:
    """The real export's records, without the suspected genuine errors when ``clean_base``."""
    from hl_debug.steps.ingest import read_export

    records = [dict(r) for r in read_export(BUNDLED_EXPORT)]
    if not clean_base:
        return records, None
    ann = [i for i, r in enumerate(records) if r["complete"] and json.loads(r["data"]).get("intent")]
    data = [json.loads(records[i]["data"]) for i in ann]
    drop, info = _suspect_mask([d["text"] for d in data], [d["intent"] for d in data], _how(clean_base))
    removed = {ann[j] for j in np.flatnonzero(drop)}
    info["removed_ids"] = sorted(int(records[i]["id"]) for i in removed)
    return [r for i, r in enumerate(records) if i not in removed], info


def bundled(*, flip_rate: float = 0.0, seed: int = 0, clean_base: bool | str = False) -> Case:
    """The real export; ``flip_rate`` > 0 plants uniform flips among its annotated rows.

    Its own annotation mistakes are unknown, so ``true`` is the given label (None when
    unannotated) apart from the planted rows; ``clean_base`` drops its suspected ones first.
    """
    records, info = _bundled_records(clean_base)
    true_of = {}
    for r in records:
        data = json.loads(r["data"])
        true_of[int(r["id"])] = (data.get("intent") or None) if r["complete"] else None
    flipped = _plant_flips(records, flip_rate, seed) if flip_rate else set()
    name = "bundled" + (f" +{flip_rate:.0%} flips" if flip_rate else "")
    truth: dict[str, Any] = {"flip_rate": flip_rate, "seed": seed}
    if info is not None:
        truth["clean_base"] = info
    return _from_records(name, records, true_of, flipped, set(), truth)


def grown(rows: int = 20_000, *, seed: int = 0, flip_rate: float = 0.03, clean_base: bool | str = False) -> Case:
    """The real export (without its suspected errors when ``clean_base``) grown to ``rows``
    (``make_scaled_export.scale``) with planted flips."""
    from benchmarks.make_scaled_export import scale

    source, info = _bundled_records(clean_base)
    records, flips = scale(source, rows, seed=seed, flip_rate=flip_rate)
    true_of = {}
    for r in records:
        data = json.loads(r["data"])
        intent = flips.get(int(r["id"]), {}).get("original", data.get("intent"))
        true_of[int(r["id"])] = (intent or None) if r["complete"] else None
    truth: dict[str, Any] = {"flips": flips}
    if info is not None:
        truth["clean_base"] = info
    return _from_records(f"grown {rows:,}", records, true_of, set(flips), set(), truth)
