"""Build a many-intent development benchmark export from banking77, with held-out truth.

banking77 (``../shared/data/banking77/{train,test}.csv``, columns ``text,category``; 10,003
+ 3,080 utterances over 77 fine-grained, overlapping intents) is turned into a platform
export (a JSON array of ``{id, project_id, complete, usage, score, data}`` records, ``data``
a JSON string ``{"text": ..., "intent": ...}``; ``.json`` or ``.json.zip``) that
``hl_debug.steps.ingest`` accepts, plus a truth file beside it (``<out>.truth.json``).

What is planted, in this order, each step drawing from its own seeded random stream:

1. ``--rows``: a subsample stratified by intent (largest-remainder quotas, every intent
   keeps at least one row); default all rows.
2. ``--holdout-intents N``: N whole intents (drawn by seed) become unknown: their rows are
   unannotated (``complete`` false, ``intent`` "", ``usage`` null).
3. ``--unannotated``: that share of the remaining (in-scope) rows, stratified by intent,
   loses its label the same way.
4. ``--splits``: the annotated rows go to training/validation/testing by these shares, per
   intent; validation/testing are filled from banking77's own ``test.csv`` rows first, so
   the curated test set stays (mostly) in evaluation.
5. ``--flip-rate``: that share of the annotated rows gets a wrong intent. Rows are drawn from
   a fixed shuffle, so for one seed a lower rate's flips are a subset of a higher rate's
   and both modes flip the same rows. ``uniform`` picks a random other in-scope intent;
   ``confusable`` picks the true intent's most confusable in-scope intent (below). Held-out
   and unannotated rows are never flipped, and nothing is flipped *to* a held-out intent.

Confusability is derived without an encoder: TF-IDF (word 1-2-grams, sublinear tf, fitted
on all banking77 texts) gives each utterance an L2-normalised vector; an intent's centroid
is the mean of its utterances' vectors; the most confusable intent of A is the in-scope
intent B != A whose centroid has the highest cosine with A's (ties by name). It is computed
on the whole dataset, independent of ``--rows`` and the seed, so an intent's designated
neighbour is a property of banking77; the truth file records it.

``score`` (the platform's softmax entropy) is a placeholder: a small random number from its
own seeded stream (exponential, mean 0.05), carrying no information about the labels.
Ids are ``--start-id`` + the record's position in a seeded shuffle, so neither ids nor
order reveal the intent.

``--clean-base`` first drops banking77's suspected genuine label errors
(``benchmarks/clean_base.py``: cleanlab on a TF-IDF and a sentence-vector logistic
regression; ``union`` of both by default), so the planted flips are the truth; the truth file's
``clean_base`` lists the dropped rows (``removed_origins``, ``train:<row>``/``test:<row>``: they
are not in the export, so they have no id). Confusability stays that of all of banking77.

Deterministic for a seed and the options: the same call writes byte-identical files.

Example::

    python benchmarks/make_banking_export.py --out /tmp/banking-5u.json.zip --flip-rate 0.05 --flip-mode uniform
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import random
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.make_scaled_export import write  # noqa: E402 - the same platform-format writer

DEFAULT_SOURCE = ROOT.parent / "shared" / "data" / "banking77"
USAGES = ("training", "validation", "testing")
FLIP_MODES = ("uniform", "confusable")

log = logging.getLogger("make_banking_export")


class Utterance(NamedTuple):
    """One banking77 row; ``origin`` is the CSV it came from (``train``/``test``), ``index`` its row there."""

    origin: str
    index: int  # type: ignore[assignment]  # the row in its CSV (shadows tuple.index)
    text: str
    intent: str


def load_banking77(source: Path = DEFAULT_SOURCE) -> list[Utterance]:
    """Read ``train.csv`` then ``test.csv`` from ``source``; check intents against ``categories.json``."""
    rows: list[Utterance] = []
    for origin in ("train", "test"):
        with open(source / f"{origin}.csv", newline="", encoding="utf-8") as fh:
            for i, rec in enumerate(csv.DictReader(fh)):
                rows.append(Utterance(origin, i, rec["text"].strip(), rec["category"].strip()))
    categories = source / "categories.json"
    if categories.exists():
        unknown = {u.intent for u in rows} - set(json.loads(categories.read_text(encoding="utf-8")))
        if unknown:
            raise ValueError(f"intents not in {categories}: {sorted(unknown)[:5]}")
    return rows


def centroid_similarity(utterances: list[Utterance]) -> tuple[list[str], np.ndarray]:
    """Cosine between intents' TF-IDF centroids: ``(intents sorted, (K, K) matrix)``, rounded to 1e-9."""
    intents = sorted({u.intent for u in utterances})
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, lowercase=True)
    x = vec.fit_transform([u.text for u in utterances])
    code = {name: k for k, name in enumerate(intents)}
    onehot = np.zeros((len(intents), len(utterances)))
    onehot[[code[u.intent] for u in utterances], np.arange(len(utterances))] = 1.0
    centroids = np.asarray((x.T @ onehot.T).T) / onehot.sum(axis=1, keepdims=True)
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    # rounding makes the argmax (and its ties) immune to last-bit float differences
    return intents, np.round(centroids @ centroids.T, 9)


def confusable_neighbours(intents: list[str], sim: np.ndarray, among: set[str]) -> dict[str, dict]:
    """For each intent in ``among``: the other intent in ``among`` with the highest similarity."""
    out: dict[str, dict] = {}
    for a, name in enumerate(intents):
        if name not in among:
            continue
        cands = [(-sim[a, b], other) for b, other in enumerate(intents) if other in among and other != name]
        if cands:
            s, other = min(cands)
            out[name] = {"neighbour": other, "similarity": float(-s)}
    return out


def apportion(total: int, weights: list[float]) -> list[int]:
    """Split ``total`` into integers proportional to ``weights`` (largest remainder, ties to the first)."""
    wsum = sum(weights)
    if total <= 0 or wsum <= 0:
        return [0] * len(weights)
    exact = [total * w / wsum for w in weights]
    counts = [math.floor(e) for e in exact]
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


def _stream(seed: int, stage: str) -> random.Random:
    # one stream per stage, so changing e.g. the flip mode leaves the splits untouched
    return random.Random(f"banking77:{seed}:{stage}")


def _by_intent(rows: list[Utterance]) -> dict[str, list[Utterance]]:
    groups: dict[str, list[Utterance]] = defaultdict(list)
    for u in sorted(rows, key=lambda u: (u.origin, u.index)):
        groups[u.intent].append(u)
    return dict(sorted(groups.items()))


def build(utterances: list[Utterance], *, seed: int = 0, rows: int | None = None,
          splits: tuple[float, float, float] = (0.8, 0.1, 0.1), unannotated: float = 0.08,
          flip_rate: float = 0.05, flip_mode: str = "uniform", holdout_intents: int = 0,
          project_id: int = 770, start_id: int = 7_700_000,
          similarity: tuple[list[str], np.ndarray] | None = None) -> tuple[list[dict], dict]:
    """Return the export records and the truth (see the module docstring for what is planted).

    ``similarity`` is :func:`centroid_similarity` of ``utterances``; pass it to reuse one.
    """
    if flip_mode not in FLIP_MODES:
        raise ValueError(f"unknown flip mode {flip_mode!r}; valid: {', '.join(FLIP_MODES)}")
    groups = _by_intent(utterances)
    all_intents = list(groups)
    if not 0 <= holdout_intents <= len(all_intents) - 2:
        raise ValueError(f"holdout_intents must be in 0..{len(all_intents) - 2}, got {holdout_intents}")
    if not (0 <= unannotated < 1 and 0 <= flip_rate < 1 and all(s >= 0 for s in splits) and sum(splits) > 0):
        raise ValueError("unannotated and flip_rate must be in [0, 1); splits non-negative, not all zero")
    n_rows = len(utterances) if rows is None else rows
    if not len(all_intents) <= n_rows <= len(utterances):
        raise ValueError(f"rows must be in {len(all_intents)}..{len(utterances)} (one per intent at least)")

    # 1. stratified subsample: one row per intent, the rest proportional to what is left
    rng = _stream(seed, "subsample")
    extra = apportion(n_rows - len(all_intents), [len(g) - 1 for g in groups.values()])
    groups = {k: sorted(rng.sample(g, 1 + e), key=lambda u: (u.origin, u.index))
              for (k, g), e in zip(groups.items(), extra)}

    # 2. held-out intents
    held_out = sorted(_stream(seed, "holdout").sample(all_intents, holdout_intents))
    in_scope = [k for k in all_intents if k not in held_out]

    # 3. unannotated share of in-scope rows, per intent (each intent keeps an annotated row)
    rng = _stream(seed, "unannotated")
    n_in = sum(len(groups[k]) for k in in_scope)
    quota = apportion(round(unannotated * n_in), [len(groups[k]) for k in in_scope])
    unlabelled: set[Utterance] = set()
    for k, q in zip(in_scope, quota):
        unlabelled.update(rng.sample(groups[k], min(q, len(groups[k]) - 1)))

    # 4. splits per intent; evaluation takes banking77's test.csv rows first
    rng = _stream(seed, "splits")
    usage: dict[Utterance, str | None] = {u: None for g in groups.values() for u in g}
    for k in in_scope:
        annotated = [u for u in groups[k] if u not in unlabelled]
        rng.shuffle(annotated)
        annotated.sort(key=lambda u: u.origin != "test")  # stable: test.csv rows first, shuffled
        n_train, n_val, n_test = apportion(len(annotated), list(splits))
        for i, u in enumerate(annotated):
            usage[u] = "validation" if i < n_val else "testing" if i < n_val + n_test else "training"

    # ids: position in a seeded shuffle of all kept rows
    kept = [u for g in groups.values() for u in g]
    _stream(seed, "order").shuffle(kept)
    ids = {u: start_id + i for i, u in enumerate(kept)}

    # 5. flips over annotated rows: a fixed shuffle, its first n (nested across rates and modes)
    sim_intents, sim = similarity if similarity is not None else centroid_similarity(utterances)
    neighbours = confusable_neighbours(sim_intents, sim, set(in_scope))
    candidates = sorted((u for u in kept if usage[u] is not None), key=lambda u: (u.origin, u.index))
    _stream(seed, "flips").shuffle(candidates)
    targets_rng = _stream(seed, "flip-targets")
    given: dict[Utterance, str] = {}
    for u in candidates[: round(flip_rate * len(candidates))]:
        uniform = targets_rng.choice([k for k in in_scope if k != u.intent])
        given[u] = uniform if flip_mode == "uniform" else neighbours[u.intent]["neighbour"]

    score_rng = _stream(seed, "score")
    records = []
    for u in kept:
        label = given.get(u, u.intent) if usage[u] is not None else ""
        records.append({
            "id": ids[u], "project_id": project_id, "complete": usage[u] is not None, "usage": usage[u],
            "score": round(score_rng.expovariate(20.0), 6),
            "data": json.dumps({"text": u.text, "intent": label}),
        })

    truth = {
        "generator": "benchmarks/make_banking_export.py",
        "seed": seed,
        "parameters": {"rows": n_rows, "splits": dict(zip(USAGES, splits)), "unannotated": unannotated,
                       "flip_rate": flip_rate, "flip_mode": flip_mode, "holdout_intents": holdout_intents,
                       "project_id": project_id, "start_id": start_id},
        "counts": {"rows": len(kept), "intents": len(all_intents), "in_scope_intents": len(in_scope),
                   "annotated": len(candidates), "unannotated": len(kept) - len(candidates),
                   **{f"n_{s}": sum(usage[u] == s for u in kept) for s in USAGES},
                   "flips": len(given), "held_out_intents": len(held_out),
                   "held_out_rows": sum(len(groups[k]) for k in held_out)},
        "intents": all_intents,
        "in_scope_intents": in_scope,
        "true_intent": {str(ids[u]): u.intent for u in sorted(kept, key=ids.__getitem__)},
        "origin": {str(ids[u]): f"{u.origin}:{u.index}" for u in sorted(kept, key=ids.__getitem__)},
        "flips": [{"id": ids[u], "true": u.intent, "given": g, "usage": usage[u]}
                  for u, g in sorted(given.items(), key=lambda ug: ids[ug[0]])],
        "unannotated_ids": sorted(ids[u] for u in unlabelled),
        "held_out": {"intents": held_out, "ids": {k: sorted(ids[u] for u in groups[k]) for k in held_out}},
        "confusable": {"method": "cosine of TF-IDF (1-2-gram, sublinear tf) intent centroids over all banking77 "
                                 "texts; neighbour = most similar other in-scope intent",
                       "neighbours": neighbours},
    }
    return records, truth


def truth_path(out: Path) -> Path:
    """Where the truth file of the export ``out`` goes: ``<out>.truth.json``."""
    return out.with_name(out.name + ".truth.json")


def summary(truth: dict, out: Path) -> str:
    """The one-line summary the CLI logs."""
    c, p = truth["counts"], truth["parameters"]
    return (f"banking77 export: {c['rows']} rows, {c['intents']} intents, {c['annotated']} annotated "
            f"({c['n_training']}/{c['n_validation']}/{c['n_testing']} train/val/test) / {c['unannotated']} unannotated, "
            f"{c['flips']} flips ({p['flip_mode']}, {p['flip_rate']:.0%}), {c['held_out_intents']} held-out intents "
            f"({c['held_out_rows']} rows); seed {truth['seed']} -> {out}")


def save(records: list[dict], truth: dict, out: Path, *, started: float) -> None:
    """Write the export to ``out`` and its truth file beside it, and log what was written."""
    write(records, out)
    truth_path(out).write_text(json.dumps(truth, indent=1), encoding="utf-8")
    log.info("%s (%.1f s)", summary(truth, out), time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="output file (.json or .json.zip)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rows", type=int, default=None, help="stratified subsample size (default: all ~13k)")
    ap.add_argument("--splits", type=float, nargs=3, default=(0.8, 0.1, 0.1), metavar=("TRAIN", "VAL", "TEST"),
                    help="shares of annotated rows for training/validation/testing")
    ap.add_argument("--unannotated", type=float, default=0.08, help="share of in-scope rows left unannotated")
    ap.add_argument("--flip-rate", type=float, default=0.05, help="share of annotated rows with a planted flip")
    ap.add_argument("--flip-mode", choices=FLIP_MODES, default="uniform",
                    help="flip to a random other intent, or to the true intent's most confusable one")
    ap.add_argument("--holdout-intents", type=int, default=0, help="whole intents turned into unannotated unknowns")
    ap.add_argument("--project-id", type=int, default=770)
    ap.add_argument("--start-id", type=int, default=7_700_000, help="first record id")
    ap.add_argument("--clean-base", nargs="?", const="union", default=None,
                    choices=("union", "tfidf", "vectors", "intersection"),
                    help="drop banking77's suspected genuine label errors first (default view: union)")
    ap.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="folder with banking77's train/test.csv")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    t0 = time.perf_counter()
    try:
        utterances = load_banking77(args.source)
        similarity = centroid_similarity(utterances)
        info = None
        if args.clean_base:
            from benchmarks.cases import clean_utterances

            utterances, info = clean_utterances(utterances, args.clean_base)
        records, truth = build(utterances, seed=args.seed, rows=args.rows, splits=tuple(args.splits),
                               unannotated=args.unannotated, flip_rate=args.flip_rate, flip_mode=args.flip_mode,
                               holdout_intents=args.holdout_intents, project_id=args.project_id,
                               start_id=args.start_id, similarity=similarity)
        if info is not None:
            truth["clean_base"] = info
    except (ValueError, OSError) as exc:
        ap.error(str(exc))
    save(records, truth, args.out, started=t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
