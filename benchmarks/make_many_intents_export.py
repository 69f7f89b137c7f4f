"""Build a 150-intent, 23.7k-row proxy export from banking77, for the linear models' timings.

Issue #16's slow cold run was on a CLINC150-like export (150 intents, 23.7k rows) that is not
on this machine. This script makes a proxy with the same row and intent counts from banking77
(``../shared/data/banking77/``, 13,083 utterances, 77 intents); the texts are banking texts,
so it stands in for the issue's export in size and shape (what the linear models' cost
depends on), not in content:

1. **intents** — the ``--intents - 77`` largest banking77 intents are each split in two
   sub-intents (``<intent>__1`` / ``<intent>__2``) by k-means (k=2, seeded) on the default
   encoder's vectors of their utterances (``benchmarks/cases.py`` ``embed``, cached on
   disk); sub-intent 1 is the cluster holding the intent's first row (train.csv order). The
   split follows the encoder's geometry, so sub-intents are about as separable as real
   neighbouring intents of a fine-grained taxonomy.
2. **rows** — grown to ``--rows`` with ``make_scaled_export.perturb`` (word substitutions,
   reorderings, typos, half-and-half recombination with a donor of the same sub-intent), each
   new row from a base utterance drawn uniformly (so intents keep their proportions), never
   an exact copy of a text already there. Grown rows have origin ``grown``.
3. **splits, unannotated rows, planted flips** — ``make_banking_export.build`` on the
   result, with its defaults (80/10/10 splits, 8% unannotated, 5% uniform flips); its truth
   file (``<out>.truth.json``) lists the flips and, here, the sub-intent of each banking77 row.

Deterministic for a seed (k-means and the growth are seeded; the vectors do not depend on the
batch). The export is written where ``--out`` says (``/tmp`` or ``~/.cache``: never the repo).

Example::

    python benchmarks/make_many_intents_export.py --out /tmp/many-intents-23k.json.zip
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.make_banking_export import (  # noqa: E402 - the same format, splits and flips
    DEFAULT_SOURCE,
    Utterance,
    build,
    load_banking77,
    save,
)
from benchmarks.make_scaled_export import perturb  # noqa: E402

log = logging.getLogger("make_many_intents_export")


def split_intents(utterances: list[Utterance], vectors: np.ndarray, *, intents: int,
                  seed: int = 0) -> list[Utterance]:
    """``utterances`` relabelled so there are ``intents`` intents: the largest intents (ties by
    name) split in two by k-means on ``vectors`` (one row per utterance)."""
    from sklearn.cluster import KMeans

    groups: dict[str, list[int]] = defaultdict(list)
    for i, u in enumerate(utterances):
        groups[u.intent].append(i)
    n_split = intents - len(groups)
    if not 0 <= n_split <= len(groups):
        raise ValueError(f"intents must be in {len(groups)}..{2 * len(groups)}, got {intents}")
    largest = sorted(groups, key=lambda k: (-len(groups[k]), k))[:n_split]
    name = {i: u.intent for i, u in enumerate(utterances)}
    for k in sorted(largest):
        idx = groups[k]
        part = KMeans(n_clusters=2, n_init=4, random_state=seed).fit_predict(vectors[idx].astype(np.float64))
        first = part[0]
        for i, p in zip(idx, part):
            name[i] = f"{k}__{1 if p == first else 2}"
    return [u._replace(intent=name[i]) for i, u in enumerate(utterances)]


def grow(utterances: list[Utterance], rows: int, *, seed: int = 0) -> list[Utterance]:
    """``utterances`` plus perturbed copies (origin ``grown``) up to ``rows`` rows, all texts distinct."""
    rng = random.Random(f"many-intents:{seed}:grow")
    donors: dict[str, list[str]] = defaultdict(list)
    for u in utterances:
        donors[u.intent].append(u.text)
    seen = {u.text for u in utterances}
    out = list(utterances)
    while len(out) < rows:
        base = rng.choice(utterances)
        for _ in range(10):
            new = perturb(base.text, donors[base.intent], rng)
            if new not in seen:
                break
        else:
            new = f"{new} {len(out)}"
        seen.add(new)
        out.append(Utterance("grown", len(out) - len(utterances), new, base.intent))
    return out


def make(source: Path = DEFAULT_SOURCE, *, rows: int = 23_700, intents: int = 150, seed: int = 0,
         flip_rate: float = 0.05) -> tuple[list[dict], dict]:
    """The proxy export's records and truth (see the module docstring)."""
    from benchmarks.cases import embed

    utterances = load_banking77(source)
    relabelled = split_intents(utterances, embed([u.text for u in utterances]), intents=intents, seed=seed)
    records, truth = build(grow(relabelled, rows, seed=seed), seed=seed, flip_rate=flip_rate,
                           project_id=150, start_id=15_000_000)
    truth["generator"] = "benchmarks/make_many_intents_export.py"
    truth["proxy"] = ("banking77 texts; the largest intents split in two by k-means on the encoder's vectors, "
                      "rows grown by make_scaled_export.perturb: a stand-in for a 150-intent, 23.7k-row export")
    truth["sub_intent"] = {f"{u.origin}:{u.index}": v.intent for u, v in zip(utterances, relabelled)
                           if v.intent != u.intent}
    return records, truth


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="output file (.json or .json.zip); not in the repo")
    ap.add_argument("--rows", type=int, default=23_700, help="rows: banking77's 13,083 plus perturbed copies up to this")
    ap.add_argument("--intents", type=int, default=150, help="77..154: how many intents after splitting")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--flip-rate", type=float, default=0.05, help="share of annotated rows with a planted flip")
    ap.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="folder with banking77's train/test.csv")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    t0 = time.perf_counter()
    try:
        records, truth = make(args.source, rows=args.rows, intents=args.intents, seed=args.seed,
                              flip_rate=args.flip_rate)
    except (ValueError, OSError) as exc:
        ap.error(str(exc))
    save(records, truth, args.out, started=t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
